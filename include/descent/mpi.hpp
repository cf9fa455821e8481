// Opt-in: a Communicator from an MPI_Comm. Including this header needs MPI's mpi.h (link MPI
// too); descent.hpp and the other headers never include it.
//
//   MPI_Init(&argc, &argv);
//   {
//     descent::Context ctx(descent::Device::cpu());
//     descent::Communicator comm = descent::mpi_communicator(MPI_COMM_WORLD, ctx);
//     ...  // loaders and trainer made with comm
//   }
//   MPI_Finalize();
#pragma once

// MPI's C API is all this needs: skip the deprecated MPI C++ bindings (a C++ program would
// otherwise have to link their library too), unless mpi.h was included before.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include "descent/communicator.hpp"

namespace descent {

// Communicator::from_mpi_fortran on the Fortran handle of `comm` (see there). Collective.
inline Communicator mpi_communicator(MPI_Comm comm, const Context& ctx, CommOptions options = {}) {
  return Communicator::from_mpi_fortran(static_cast<int>(MPI_Comm_c2f(comm)), ctx, options);
}

}  // namespace descent
