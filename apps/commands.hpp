// The commands of the descent command, and the option table each declares.
#pragma once

#include <vector>

#include "options.hpp"

namespace descent::app {

int run_train(int argc, char** argv);
int run_eval(int argc, char** argv);
int run_export(int argc, char** argv);
int run_import(int argc, char** argv);
int run_predict(int argc, char** argv);

// Every option of `descent train` / `eval` / `export` / `import` / `predict`, as their parsers
// declare them.
std::vector<OptionSpec> train_option_table();
std::vector<OptionSpec> eval_option_table();
std::vector<OptionSpec> export_option_table();
std::vector<OptionSpec> import_option_table();
std::vector<OptionSpec> predict_option_table();

}  // namespace descent::app
