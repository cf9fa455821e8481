// The IDX loader (MNIST, Fashion-MNIST): raw or gzip (zlib), bounded by the header's sizes.
#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "descent/data.hpp"
#include "descent/error.hpp"
#include "input_file.hpp"
#include "labels.hpp"

namespace descent {

// ---------------------------------------------------------------- IDX

namespace {

// Limits that keep a corrupt or hostile file from asking for unbounded memory.
constexpr std::uint64_t kMaxIdxBytes = std::uint64_t(1) << 32;  // an IDX file's header + data
// deflate cannot compress better than about 1032:1, so a gzip file of n bytes inflates to at most
// n * 1032 bytes: a header declaring more is a lie we can see before allocating.
constexpr std::uint64_t kMaxInflateRatio = 1032;
constexpr std::size_t kReadChunk = std::size_t(1) << 16;

// The bytes of an IDX file, raw or inflated from gzip, produced on demand so that a reader never
// inflates more than it asked for (a gzip bomb stops one byte past the declared size).
class IdxStream {
 public:
  explicit IdxStream(const std::string& path) : file_(path, "load_idx"), in_(kReadChunk) {
    gzip_ = ensure_input(2) && in_[0] == 0x1f && in_[1] == 0x8b;
    if (gzip_ && inflateInit2(&z_, 15 + 16) != Z_OK) {
      throw OutOfMemory("load_idx: zlib could not start inflating '" + path + "'");
    }
  }
  ~IdxStream() {
    if (gzip_) inflateEnd(&z_);
  }
  IdxStream(const IdxStream&) = delete;
  IdxStream& operator=(const IdxStream&) = delete;

  bool gzip() const { return gzip_; }
  std::uint64_t file_size() const { return file_.size(); }
  // The most bytes this file can hold once decoded.
  std::uint64_t bound() const {
    if (!gzip_) return file_.size();
    std::uint64_t b = 0;
    return detail::checked_mul(file_.size(), kMaxInflateRatio, b) ? b : ~std::uint64_t(0);
  }

  // Fills dst with up to n bytes; fewer only at the end of the data.
  std::size_t produce(std::uint8_t* dst, std::size_t n) {
    if (!gzip_) {
      const std::size_t buffered = std::min<std::size_t>(z_.avail_in, n);
      if (buffered > 0) std::memcpy(dst, z_.next_in, buffered);
      z_.next_in += buffered;
      z_.avail_in -= static_cast<uInt>(buffered);
      return buffered + (buffered < n ? file_.read(dst + buffered, n - buffered) : 0);
    }
    std::size_t done = 0;
    while (done < n && !finished_) {
      if (member_ended_) {
        // Another gzip member may follow (as gzip -c a b > c makes); anything else is garbage.
        if (!ensure_input(1)) {
          finished_ = true;
          break;
        }
        if (!ensure_input(2) || z_.next_in[0] != 0x1f || z_.next_in[1] != 0x8b) {
          throw DataError("'" + file_.path() +
                          "': trailing data after the end of the gzip stream, expected the end "
                          "of the file");
        }
        inflateReset(&z_);
        member_ended_ = false;
      }
      if (z_.avail_in == 0) ensure_input(1);
      z_.next_out = dst + done;
      z_.avail_out = static_cast<uInt>(std::min<std::size_t>(n - done, std::size_t(1) << 30));
      const uInt before = z_.avail_out;
      const int ret = inflate(&z_, Z_NO_FLUSH);
      done += before - z_.avail_out;
      if (ret == Z_STREAM_END) {
        member_ended_ = true;
      } else if (ret == Z_BUF_ERROR && z_.avail_in == 0 && eof_) {
        throw DataError("'" + file_.path() +
                        "': the gzip stream is truncated or corrupt (the file ends inside it)");
      } else if (ret != Z_OK && ret != Z_BUF_ERROR) {
        throw DataError("'" + file_.path() + "': the gzip stream is truncated or corrupt (zlib: " +
                        (z_.msg != nullptr ? z_.msg : zError(ret)) + ")");
      }
    }
    return done;
  }

 private:
  // Makes at least k unread bytes available; false when the file ends first.
  bool ensure_input(std::size_t k) {
    if (z_.avail_in >= k) return true;
    if (z_.avail_in > 0) std::memmove(in_.data(), z_.next_in, z_.avail_in);
    z_.next_in = in_.data();
    while (z_.avail_in < k && !eof_) {
      const std::size_t got = file_.read(in_.data() + z_.avail_in, in_.size() - z_.avail_in);
      if (got == 0) eof_ = true;
      z_.avail_in += static_cast<uInt>(got);
    }
    return z_.avail_in >= k;
  }

  detail::InputFile file_;
  std::vector<std::uint8_t> in_;
  z_stream z_{};
  bool gzip_ = false, eof_ = false, member_ended_ = false, finished_ = false;
};

std::uint32_t big_endian32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
         std::uint32_t(p[3]);
}

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// An IDX file's dimensions and the data after its header.
struct IdxFile {
  std::vector<std::int64_t> dims;
  std::vector<std::uint8_t> data;
};

// Reads an IDX file, checking the header against the file before allocating the data.
IdxFile read_idx(const std::string& path, std::uint32_t expected_magic, const char* what) {
  IdxStream in(path);
  const std::size_t ndims = expected_magic & 0xff;
  const std::size_t header = 4 + 4 * ndims;
  std::uint8_t head[4 + 4 * 255];
  std::size_t got = in.produce(head, 4);
  if (got < 4) {
    throw DataError(
        "'" + path + "': " + std::to_string(got) +
        " bytes is too short for an IDX file (expected at least a 4-byte magic number)");
  }
  const std::uint32_t magic = big_endian32(head);
  if (magic != expected_magic) {
    throw DataError("'" + path + "': wrong IDX magic number " + hex32(magic) + ", expected " +
                    hex32(expected_magic) + " for an IDX " + what + " file (unsigned bytes, " +
                    std::to_string(ndims) + " dimensions)");
  }
  got += in.produce(head + 4, header - 4);
  if (got < header) {
    throw DataError("'" + path + "': truncated IDX header: expected " + std::to_string(header) +
                    " bytes, the " + (in.gzip() ? "inflated data has " : "file has ") +
                    std::to_string(got));
  }
  IdxFile f;
  std::string dim_text;
  std::uint64_t total = 1;
  bool overflow = false;
  for (std::size_t i = 0; i < ndims; ++i) {
    const std::uint32_t d = big_endian32(head + 4 + 4 * i);
    if (d < 1) {
      throw DataError("'" + path + "': IDX dimension " + std::to_string(i) + " is " +
                      std::to_string(d) + "; every dimension must be >= 1 (an empty dataset?)");
    }
    f.dims.push_back(d);
    dim_text += (i ? " x " : "") + std::to_string(d);
    overflow = overflow || !detail::checked_mul(total, d, total);
  }
  if (overflow || total > kMaxIdxBytes - header) {
    throw DataError("'" + path + "': the IDX header says " + dim_text +
                    ", more data than the limit of " + std::to_string(kMaxIdxBytes) +
                    " bytes an IDX file may hold");
  }
  const std::uint64_t expected = header + total;
  if (!in.gzip() && in.file_size() != expected) {
    throw DataError("'" + path + "': the IDX header says " + dim_text + " (" +
                    std::to_string(expected) + " bytes in all) but the data holds " +
                    std::to_string(in.file_size()) + " bytes");
  }
  if (expected > in.bound()) {
    throw DataError("'" + path + "': the IDX header says " + dim_text + " (" +
                    std::to_string(expected) + " bytes in all) but a gzip file of " +
                    std::to_string(in.file_size()) + " bytes inflates to at most " +
                    std::to_string(in.bound()));
  }
  f.data.resize(static_cast<std::size_t>(total));
  got = in.produce(f.data.data(), f.data.size());
  std::uint8_t extra = 0;
  const bool more = got == f.data.size() && in.produce(&extra, 1) != 0;
  if (got < f.data.size() || more) {
    throw DataError("'" + path + "': the IDX header says " + dim_text + " (" +
                    std::to_string(expected) + " bytes in all) but the data holds " +
                    (more ? "more" : std::to_string(header + got) + " bytes"));
  }
  return f;
}

}  // namespace

Dataset load_idx(const std::string& images_path, const std::string& labels_path,
                 IdxOptions options) {
  if (options.classes < 0 || options.limit < 0) {
    throw ArgumentError("load_idx: classes and limit must be >= 0, got " +
                        std::to_string(options.classes) + " and " + std::to_string(options.limit));
  }
  const IdxFile images = read_idx(images_path, 0x00000803u, "image");
  const IdxFile labels = read_idx(labels_path, 0x00000801u, "label");
  const std::vector<std::int64_t>& idims = images.dims;
  const std::vector<std::int64_t>& ldims = labels.dims;
  if (idims[0] != ldims[0]) {
    throw DataError("load_idx: '" + images_path + "' holds " + std::to_string(idims[0]) +
                    " images but '" + labels_path + "' holds " + std::to_string(ldims[0]) +
                    " labels; the counts must be equal");
  }
  std::int64_t count = idims[0];
  if (options.limit > 0) count = std::min(count, options.limit);
  const std::int64_t features = idims[1] * idims[2];
  std::vector<std::int32_t> label_values(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) {
    label_values[static_cast<std::size_t>(i)] = labels.data[static_cast<std::size_t>(i)];
  }
  const std::int64_t classes =
      options.classes > 0
          ? options.classes
          : detail::inferred_classes(label_values, "load_idx: '" + labels_path + "'");
  detail::check_labels(label_values, classes, "load_idx: '" + labels_path + "'");
  return Dataset::from_uint8(
      std::span<const std::uint8_t>(images.data.data(), static_cast<std::size_t>(count * features)),
      features, label_values, classes);
}

IdxImages load_idx_images(const std::string& path, std::int64_t limit) {
  if (limit < 0) {
    throw ArgumentError("load_idx_images: limit must be >= 0, got " + std::to_string(limit));
  }
  IdxFile images = read_idx(path, 0x00000803u, "image");
  IdxImages out;
  out.count = limit > 0 ? std::min(images.dims[0], limit) : images.dims[0];
  out.features = images.dims[1] * images.dims[2];
  images.data.resize(static_cast<std::size_t>(out.count * out.features));
  out.pixels = std::move(images.data);
  return out;
}

}  // namespace descent
