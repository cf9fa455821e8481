! What the Fortran test programs share: checks that count failures instead of stopping, so one
! run reports every failed check; a program ends with `call finish("name")`.
module checks
  use, intrinsic :: iso_c_binding, only: c_int
  use descent, only: descent_last_error, descent_status_string
  implicit none
  private
  public :: expect, expect_message, fail, finish
  integer :: failures = 0

contains

  ! A call's status against the one wanted, with the library's message when they differ.
  subroutine expect(status, want, what)
    integer(c_int), intent(in) :: status, want
    character(*), intent(in) :: what
    if (status /= want) then
      write(*, '(a)') what // ": " // descent_status_string(status) // ", expected " // &
        descent_status_string(want) // ": " // descent_last_error()
      failures = failures + 1
    end if
  end subroutine

  ! The last error's message says `part`.
  subroutine expect_message(part)
    character(*), intent(in) :: part
    if (index(descent_last_error(), part) == 0) then
      call fail("the message '" // descent_last_error() // "' does not say '" // part // "'")
    end if
  end subroutine

  subroutine fail(what)
    character(*), intent(in) :: what
    write(*, '(a)') what
    failures = failures + 1
  end subroutine

  ! Stops with exit code 1 after any failed check, else says the program passed.
  subroutine finish(name)
    character(*), intent(in) :: name
    if (failures > 0) error stop 1
    write(*, '(a)') name // ": passed"
  end subroutine

end module checks
