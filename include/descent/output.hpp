// Safe output files: whole-file replacement that never leaves half a file, never replaces a
// special file, and checks made before any work starts (a writable folder, two paths that are
// the same file).
#pragma once

#include <string>
#include <string_view>

#include "descent/export.h"

DESCENT_API_BEGIN

namespace descent {

// What a path names as an output.
enum class OutputKind {
  file,    // a regular file, or nothing yet: replaced as a whole (temp file + rename)
  stream,  // a character device or a FIFO (/dev/stdout, a named pipe): written through in place
};

// Writes `bytes` to `path`; `what` names the output in messages (an option such as
// "--metrics", or "save_checkpoint"). By what `path` names:
//  - nothing, or a regular file: the bytes go to a file with no name yet in the same folder
//    (O_TMPFILE; rename is atomic only within one file system), are flushed to disk, and the
//    file is linked under a unique temporary name and at once renamed over `path`. A reader sees
//    the old file or the new one, never half of one; a process killed while writing (even by
//    SIGKILL) leaves nothing behind, and on failure the old file is left intact. Where the file
//    system has no unnamed files, a named temporary file ("PATH.tmp.XXXXXX") is written instead
//    and removed on failure.
//    A replaced file keeps its permission bits; a new one gets 0644.
//  - a symbolic link (or a chain of them): the file it points to is replaced as above; the link
//    stays a link.
//  - a character device or a FIFO: written through (opened for writing, no rename), which is what
//    `--metrics /dev/stdout` or a pipe means. There is no atomicity here; a FIFO blocks until a
//    reader opens it.
//  - a folder, a socket, a block device or anything else: IoError, nothing is changed.
void write_file_atomic(const std::string& path, std::string_view bytes, const std::string& what);

// Removes the named temporary files that write_file_atomic and save_checkpoint have created and
// not yet renamed (or removed): async-signal-safe, for a signal handler that ends the process,
// so that a signal arriving during a save leaves the previous file and no temporary one (a file
// still being written has no name and needs nothing).
void remove_temporary_files() noexcept;

// Checks that write_file_atomic(path, ...) can succeed, without changing what is at `path`: for a
// file, the folder must exist and a temporary file must really be creatable (and is removed)
// there; for a stream, it must be writable. Throws IoError naming `what`, the path and what to do.
OutputKind check_output_location(const std::string& path, const std::string& what);

// True when a and b name the same file: the same device and inode when both exist (through
// symbolic links and hard links), else the same resolved folder and name (so two spellings of a
// file that does not exist yet compare equal).
bool same_file(const std::string& a, const std::string& b);

}  // namespace descent

DESCENT_API_END
