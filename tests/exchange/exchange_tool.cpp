// The descent side of tests/exchange/check_exchange.py: makes models, runs descent's forward pass
// and continues training, on raw little-endian float32 files, so that the Python tools' results
// can be compared with descent's own.
//   exchange_tool make OUT.ckpt W0,W1,... ACT0,ACT1,... SEED   a seeded model as a checkpoint
//   exchange_tool forward MODEL X.f32 ROWS OUT.f32               MODEL: .ckpt or .safetensors
//   exchange_tool train MODEL.safetensors X.f32 Y.f32 ROWS STEPS LR OUT.safetensors
//                                                                full-batch SGD on MSE; prints
//                                                                the loss before each step
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "descent/descent.hpp"

namespace {

using namespace descent;

std::vector<float> read_floats(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

void write_floats(const std::string& path, const std::vector<float>& v) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(v.data()),
            static_cast<std::streamsize>(v.size() * sizeof(float)));
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = s.find(',', start);
    out.push_back(s.substr(start, comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

Mlp load(const Context& ctx, const std::string& path) {
  if (path.size() > 5 && path.substr(path.size() - 5) == ".ckpt") {
    return make_model(ctx, read_checkpoint(path));
  }
  return load_safetensors(ctx, path);
}

// The model's outputs for x [rows, inputs], packed row by row.
std::vector<float> forward(const Context& ctx, Mlp& model, const std::vector<float>& x,
                           std::int64_t rows) {
  Buffer<float> xb(ctx, rows * model.inputs());
  xb.copy_from_host(ctx, x);
  model.reserve(rows);
  const MatrixView<const float> y =
      model.forward(MatrixView<const float>(xb.data(), rows, model.inputs(), ctx.device()));
  std::vector<float> out(static_cast<std::size_t>(rows * model.outputs()));
  for (std::int64_t r = 0; r < rows; ++r) {
    detail::copy_bytes(ctx, out.data() + r * model.outputs(), Device::cpu(), y.data + r * y.ld,
                       ctx.device(), sizeof(float) * model.outputs());
  }
  return out;
}

int run(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  Context ctx(Device::cpu(), {1});
  if (command == "make" && argc == 6) {
    std::vector<std::int64_t> widths;
    for (const std::string& w : split(argv[3])) widths.push_back(std::stoll(w));
    std::vector<Activation> activations;
    for (const std::string& a : split(argv[4])) activations.push_back(parse_activation(a.c_str()));
    Mlp model(ctx, widths, activations, {Init::torch_default, std::stoull(argv[5])});
    save_checkpoint(argv[2], model);
    return 0;
  }
  if (command == "forward" && argc == 6) {
    Mlp model = load(ctx, argv[2]);
    write_floats(argv[5], forward(ctx, model, read_floats(argv[3]), std::stoll(argv[4])));
    return 0;
  }
  if (command == "train" && argc == 9) {
    Mlp model = load_safetensors(ctx, argv[2]);
    const std::int64_t rows = std::stoll(argv[5]), steps = std::stoll(argv[6]);
    const std::vector<float> x = read_floats(argv[3]), y = read_floats(argv[4]);
    Buffer<float> xb(ctx, rows * model.inputs()), yb(ctx, rows * model.outputs());
    xb.copy_from_host(ctx, x);
    yb.copy_from_host(ctx, y);
    model.reserve(rows);
    Sgd sgd(model, {std::stof(argv[7])});
    Trainer trainer(model, Loss::mse, sgd);
    Batch batch;
    batch.x = MatrixView<const float>(xb.data(), rows, model.inputs(), ctx.device());
    batch.targets = MatrixView<const float>(yb.data(), rows, model.outputs(), ctx.device());
    for (std::int64_t s = 0; s < steps; ++s) {
      trainer.step(batch);
      std::printf("%.9g\n", trainer.take_train_loss());
    }
    save_safetensors(argv[8], model);
    return 0;
  }
  std::cerr << "usage: exchange_tool make|forward|train ... (see the top of exchange_tool.cpp)\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "exchange_tool: " << e.what() << "\n";
    return 1;
  }
}
