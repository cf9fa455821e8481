// The C API's promises, checked for every function descent.h declares. One table says how to
// call each function with valid arguments, which of its pointers may not be NULL and whether it
// changes state; the tests read descent.h itself, so a function declared there but missing from
// the table fails, and a new entry point is covered by being declared. For every function they
// check: NULL for each pointer it needs is refused with a message naming that argument, and a
// failed call (NULL, a bad value, a bad file, a refused checkpoint) changes nothing observable.
#include "c_api_contract.hpp"

namespace c_api_contract {
namespace {

using Observation = std::map<std::string, std::string>;

// Everything a caller can observe of a world, then the same after one more training step (a
// state that failed to change nothing visible now, the optimizer's momentum say, shows there).
// Reading the loss takes it, so a world is observed once.
Observation observe(World& w) {
  Observation o;
  const auto note = [&](const std::string& key, descent_status s, const std::string& value) {
    o[key] = s == DESCENT_OK ? value : std::string("error ") + descent_status_string(s);
  };
  const char* device = nullptr;
  descent_status s = descent_context_device(w.ctx, &device);
  note("context device", s, s == DESCENT_OK ? device : "");
  void* stream = reinterpret_cast<void*>(1);
  s = descent_context_get_stream(w.ctx, &stream);
  note("context stream", s, std::to_string(reinterpret_cast<std::uintptr_t>(stream)));
  for (const auto& [name, d] : {std::pair<const char*, descent_dataset*>{"data", w.data},
                                {"targets_data", w.targets_data}}) {
    std::int64_t rows = -1, features = -1, classes = -1;
    s = descent_dataset_shape(d, &rows, &features, &classes);
    note(std::string(name) + " shape", s,
         exact_all(std::vector<std::int64_t>{rows, features, classes}));
    if (s != DESCENT_OK || rows < 1 || features < 1) continue;
    std::vector<float> f(static_cast<std::size_t>(rows * features));
    std::vector<std::int32_t> l(static_cast<std::size_t>(rows));
    s = descent_dataset_copy(d, 0, rows, f.data(), features, classes > 0 ? l.data() : nullptr);
    note(std::string(name) + " contents", s, exact_all(f) + exact_all(l));
  }
  int rank = -1, size = -1;
  s = descent_communicator_rank(w.single, &rank);
  note("communicator rank", s, std::to_string(rank));
  s = descent_communicator_size(w.single, &size);
  note("communicator size", s, std::to_string(size));
  o["checkpoint file"] = exact_all(std::vector<unsigned char>(
      std::istreambuf_iterator<char>(std::ifstream(w.checkpoint, std::ios::binary).rdbuf()), {}));

  for (const char* when : {"", "after a step: "}) {
    const std::string at(when);
    std::vector<float> p(static_cast<std::size_t>(w.params));
    s = descent_model_get_params(w.model, p.data(), w.params);
    note(at + "model params", s, exact_all(p));
    std::int64_t inputs = -1, outputs = -1;
    s = descent_model_shape(w.model, &inputs, &outputs);
    note(at + "model shape", s, exact_all(std::vector<std::int64_t>{inputs, outputs}));
    float lr = -1;
    s = descent_optimizer_lr(w.opt, &lr);
    note(at + "optimizer lr", s, exact(lr));
    std::int64_t steps = -1;
    s = descent_optimizer_steps(w.opt, &steps);
    note(at + "optimizer steps", s, std::to_string(steps));
    const char* kind = nullptr;
    s = descent_optimizer_kind(w.opt, &kind);
    note(at + "optimizer kind", s, s == DESCENT_OK ? kind : "");
    double loss = -1;
    s = descent_trainer_take_loss(w.trainer, &loss);
    note(at + "trainer loss", s, exact(loss));
    std::int64_t skipped = -1;
    s = descent_trainer_skipped_steps(w.trainer, &skipped);
    note(at + "trainer skipped steps", s, std::to_string(skipped));
    float norm = -1;
    s = descent_trainer_last_grad_norm(w.trainer, &norm);
    note(at + "trainer last grad norm", s, exact(norm));
    double eval_loss = -1, accuracy = -1;
    s = descent_trainer_evaluate_dataset(w.trainer, w.data, 3, &eval_loss, &accuracy);
    note(at + "evaluation", s, exact(eval_loss) + " " + exact(accuracy));
    if (at.empty()) {
      s = descent_trainer_step(w.trainer, w.x.data(), World::kRows, World::kInputs, World::kInputs,
                               w.labels.data(), nullptr, 0, DESCENT_MEMORY_HOST);
      note("the step", s, "ok");
    }
  }
  return o;
}

// The keys whose values differ, with both values.
std::string differences(const Observation& expected, const Observation& found) {
  std::string out;
  for (const auto& [key, value] : expected) {
    const auto it = found.find(key);
    const std::string other = it == found.end() ? "(missing)" : it->second;
    if (other != value) {
      out += "\n  " + key + ": expected " + value.substr(0, 200) + "\n  " +
             std::string(key.size(), ' ') + "  found    " + other.substr(0, 200);
    }
  }
  return out;
}

// The observation of an untouched world (the same for every world).
const Observation& reference() {
  static const Observation o = [] {
    World w;
    return observe(w);
  }();
  return o;
}

// Every function of descent.h: how to call it, which pointers it needs, whether it changes state.
const std::vector<Entry>& table() {
  static const std::vector<Entry> entries = [] {
    std::vector<Entry> all = setup_entries();
    for (Entry& e : training_entries()) all.push_back(std::move(e));
    for (Entry& e : exchange_entries()) all.push_back(std::move(e));
    for (Entry& e : jet_entries()) all.push_back(std::move(e));
    return all;
  }();
  return entries;
}

const Entry* find_entry(const std::string& name) {
  for (const Entry& e : table()) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

// ------------------------------------------------------------------ reading descent.h

fs::path header_path() {
  // ctest gives DESCENT_TEST_DATA=<source>/tests/data; run by hand, this file's own path.
  if (const char* data = std::getenv("DESCENT_TEST_DATA"); data != nullptr && *data != '\0') {
    return fs::path(data).parent_path().parent_path() / "include/descent/descent.h";
  }
  return fs::path(__FILE__).parent_path().parent_path() / "include/descent/descent.h";
}

// The functions descent.h declares, each with the names of its pointer parameters (a function
// pointer type, descent_epoch_callback, counts as a pointer).
std::map<std::string, std::set<std::string>> declared_functions() {
  const std::string raw = read_bytes(header_path());
  // Comments and preprocessor lines out (a plain scan: <regex> trips GCC 12's warnings under
  // the sanitizers).
  std::string text;
  for (std::size_t i = 0; i < raw.size();) {
    if (raw.compare(i, 2, "/*") == 0) {
      const std::size_t end = raw.find("*/", i + 2);
      i = end == std::string::npos ? raw.size() : end + 2;
      text += ' ';
    } else if (raw.compare(i, 2, "//") == 0 || (raw[i] == '#' && (i == 0 || raw[i - 1] == '\n'))) {
      const std::size_t end = raw.find('\n', i);
      i = end == std::string::npos ? raw.size() : end;
    } else {
      text += raw[i++];
    }
  }
  const auto is_name = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
  };
  std::map<std::string, std::set<std::string>> out;
  // Every "descent_xxx(params);" with no parentheses inside params: a function declaration.
  for (std::size_t at = text.find("descent_"); at != std::string::npos;
       at = text.find("descent_", at + 1)) {
    if (at > 0 && is_name(text[at - 1])) continue;
    std::size_t end = at;
    while (end < text.size() && is_name(text[end])) ++end;
    std::size_t open = end;
    while (open < text.size() && std::isspace(static_cast<unsigned char>(text[open]))) ++open;
    if (open >= text.size() || text[open] != '(') continue;
    const std::size_t close = text.find_first_of("()", open + 1);
    if (close == std::string::npos || text[close] != ')') continue;
    std::size_t semi = close + 1;
    while (semi < text.size() && std::isspace(static_cast<unsigned char>(text[semi]))) ++semi;
    if (semi >= text.size() || text[semi] != ';') continue;
    std::set<std::string>& pointers = out[text.substr(at, end - at)];
    std::stringstream params(text.substr(open + 1, close - open - 1));
    for (std::string p; std::getline(params, p, ',');) {
      std::size_t last = p.size();
      while (last > 0 && !is_name(p[last - 1])) --last;
      std::size_t first = last;
      while (first > 0 && is_name(p[first - 1])) --first;
      if (first == last || std::isdigit(static_cast<unsigned char>(p[first])) != 0) continue;
      if (p.find('*') != std::string::npos ||
          p.find("descent_epoch_callback") != std::string::npos) {
        pointers.insert(p.substr(first, last - first));
      }
    }
  }
  return out;
}

// ------------------------------------------------------------------ the tests

TEST(CApiContract, EveryFunctionOfTheHeaderIsInTheTable) {
  const auto declared = declared_functions();
  ASSERT_GE(declared.size(), 40u) << "could not read the declarations of " << header_path();
  for (const auto& [name, pointers] : declared) {
    const Entry* e = find_entry(name);
    if (e == nullptr) {
      ADD_FAILURE() << name << " is declared in descent.h but missing from the table in "
                    << __FILE__ << ": add how to call it, which pointers it needs and "
                    << "whether it changes state";
      continue;
    }
    std::set<std::string> tabled(e->required.begin(), e->required.end());
    tabled.insert(e->nullable.begin(), e->nullable.end());
    EXPECT_EQ(tabled.size(), e->required.size() + e->nullable.size())
        << name << ": a pointer listed both as required and as nullable";
    EXPECT_EQ(tabled, pointers) << name << ": the table's pointer arguments (required and "
                                << "nullable) are not those descent.h declares";
  }
  for (const Entry& e : table()) {
    EXPECT_TRUE(declared.count(e.name) != 0) << e.name << " is in the table but not in descent.h";
    if (e.effect == Effect::changes_state && e.failures.empty()) {
      // Only NULL arguments make these fail (or, for the MPI one, this process cannot succeed).
      const std::set<std::string> only_null = {"descent_communicator_create_single",
                                               "descent_trainer_take_loss",
                                               "descent_communicator_create_mpi",
                                               "descent_optimizer_step",
                                               "descent_communicator_sum_gradients"};
      EXPECT_TRUE(only_null.count(e.name) != 0)
          << e.name << " changes state: list the ways it fails in the table";
    }
  }
}

TEST(CApiContract, ValidCallsSucceedAndPassEveryPointerThroughTheTable) {
  for (const Entry& e : table()) {
    if (e.effect == Effect::ends_process) continue;
    SCOPED_TRACE(e.name);
    World w;
    Call call;
    const descent_status s = e.call(w, call);
    EXPECT_EQ(s, e.valid) << descent_status_string(s) << ": " << descent_last_error() << " "
                          << e.why_not_ok;
    if (s == DESCENT_OK) {
      EXPECT_STREQ(descent_last_error(), "");
    }
    std::set<std::string> tabled(e.required.begin(), e.required.end());
    tabled.insert(e.nullable.begin(), e.nullable.end());
    EXPECT_EQ(call.used(), tabled) << "the call does not route exactly its pointer arguments "
                                   << "through Call::arg";
  }
}

TEST(CApiContract, NullArgumentsAreRefusedByNameAndChangeNothing) {
  for (const Entry& e : table()) {
    for (const std::string& arg : e.required) {
      SCOPED_TRACE(e.name + "(" + arg + " = NULL)");
      World w;
      Call call(arg);
      const descent_status s = e.call(w, call);
      EXPECT_EQ(s, DESCENT_ERROR_ARGUMENT) << descent_status_string(s);
      const std::string message = descent_last_error();
      EXPECT_NE(message.find(e.name + ": "), std::string::npos) << message;
      EXPECT_NE(message.find(arg + ": "), std::string::npos)
          << "the message does not name the argument: " << message;
      EXPECT_FALSE(call.out_left_set()) << "*out is not NULL after the failure";
      EXPECT_EQ(differences(reference(), observe(w)), "");
    }
    if (e.effect == Effect::destroys) {
      for (const std::string& arg : e.nullable) {
        SCOPED_TRACE(e.name + "(NULL)");
        World w;
        Call call(arg);
        EXPECT_EQ(e.call(w, call), DESCENT_OK);
        EXPECT_EQ(differences(reference(), observe(w)), "");
      }
    }
  }
}

TEST(CApiContract, FailedCallsChangeNothing) {
  for (const Entry& e : table()) {
    for (const Failure& f : e.failures) {
      SCOPED_TRACE(e.name + " with " + f.what);
      World w;
      Call call;
      const descent_status s = f.call(w, call);
      EXPECT_EQ(s, f.expected) << descent_status_string(s) << ": " << descent_last_error();
      if (s != DESCENT_OK) {
        const std::string message = descent_last_error();
        EXPECT_EQ(message.rfind(e.name + ": ", 0), 0u) << message;
        EXPECT_GT(message.size(), e.name.size() + 2) << message;
      }
      EXPECT_FALSE(call.out_left_set()) << "*out is not NULL after the failure";
      EXPECT_EQ(differences(reference(), observe(w)), "");
    }
  }
}

TEST(CApiContract, AbortWithASingleProcessEndsItWithTheCodeAndMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        World w;
        Call call;
        find_entry("descent_communicator_abort")->call(w, call);
      },
      ::testing::ExitedWithCode(3), "descent: bye");
}
}  // namespace
}  // namespace c_api_contract
