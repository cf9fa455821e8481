// libFuzzer target for load_csv and load_csv_table (the table reader of descent predict).
//
// Input: one options byte, then the file. Bit 0: regression; bits 1-2: header detect/yes/no;
// bit 3: label is column 0 (else the last); bit 4: ';' delimits (else ','); bit 5: the label is
// the column named "label"; bit 6: keep at most 2 samples; bit 7: 3 classes (else max + 1).
#include <cstdint>
#include <string>

#include "descent/data.hpp"
#include "descent/error.hpp"
#include "scratch_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static descent::fuzz::ScratchFile file("csv");
  if (size < 1) return 0;
  const std::uint8_t mode = data[0];
  descent::CsvOptions o;
  o.regression = (mode & 1) != 0;
  const int header = (mode >> 1) & 3;
  o.header = header == 1   ? descent::CsvOptions::Header::yes
             : header == 2 ? descent::CsvOptions::Header::no
                           : descent::CsvOptions::Header::detect;
  o.label_index = (mode & 8) != 0 ? 0 : -1;
  o.delimiter = (mode & 16) != 0 ? ';' : ',';
  if ((mode & 32) != 0) o.label_name = "label";
  o.limit = (mode & 64) != 0 ? 2 : 0;
  o.classes = (mode & 128) != 0 && !o.regression ? 3 : 0;
  const std::string& path = file.write(data + 1, size - 1);
  try {
    const descent::Dataset d = descent::load_csv(path, o);
    (void)d.feature_stats();
  } catch (const descent::Error&) {
    // The expected answer to a malformed file; anything else escapes and libFuzzer reports it.
  }
  try {
    const descent::CsvTable t = descent::load_csv_table(path, o);
    if (t.values.size() != static_cast<std::size_t>(t.rows * t.columns)) __builtin_trap();
  } catch (const descent::Error&) {
  }
  return 0;
}
