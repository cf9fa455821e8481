// descent: gradient-descent training of MLPs on NVIDIA GPUs and CPUs. Includes the whole C++ API.
#pragma once

#include "descent/bf16.hpp"
#include "descent/buffer.hpp"
#include "descent/checkpoint.hpp"
#include "descent/communicator.hpp"
#include "descent/context.hpp"
#include "descent/data.hpp"
#include "descent/error.hpp"
#include "descent/jet.hpp"
#include "descent/model.hpp"
#include "descent/onnx.hpp"
#include "descent/ops.hpp"
#include "descent/optimizer.hpp"
#include "descent/output.hpp"
#include "descent/safetensors.hpp"
#include "descent/trainer.hpp"
#include "descent/version.hpp"
