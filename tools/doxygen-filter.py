#!/usr/bin/env python3
"""Doxygen input filter for descent's public headers (docs/Doxyfile: INPUT_FILTER).

The headers are commented in plain C++ (// ...) and C (/* ... */) style, for people first. This
filter shows those comments to Doxygen as documentation, without changing the headers:
  - the first comment block of a file documents the file (\\file);
  - a comment block before a declaration documents it (// -> ///, /* -> /**);
  - a comment after a member or enumerator documents it (///<, /**<);
  - section rulers (// ---- name) stay plain comments;
  - characters Doxygen reads as commands or HTML inside comment text are escaped;
  - an indented comment line (a formula, an example) keeps its own line.
Line numbers are kept, except one line added for \\file, so warnings point near the source.
Markdown pages pass through unchanged.
"""
import re
import sys

ESCAPES = str.maketrans({c: "\\" + c for c in "\\<>@&#%$"})
RULER = re.compile(r"^\s*(//|/\*)\s*-{5,}")


def text(s):
    return s.translate(ESCAPES)


def filter_cpp(lines):
    out = []
    in_file_block = False
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)//(?!/)\s?(.*)$", line)
        if m and RULER.match(line):
            out.append(line)
            continue
        if m:
            if i == 0:
                out.append("/// \\file\n")
                in_file_block = True
            body = m.group(2)
            # An indented line (a formula, an example) starts on a line of its own.
            brk = "\\n " if body.startswith("  ") else ""
            out.append(f"{m.group(1)}/// {brk}{text(body)}\n")
            continue
        if in_file_block:
            out.append("\n" if not line.strip() else line)
            in_file_block = False
            continue
        t = re.match(r'^(\s*[^"/\s][^"]*?[;,{])(\s*)//(?!/)\s?(.*)$', line)
        if t:
            out.append(f"{t.group(1)}{t.group(2)}///< {text(t.group(3))}\n")
            continue
        out.append(line)
    return out


def filter_c(lines):
    out = []
    in_comment = False
    for i, line in enumerate(lines):
        if in_comment:
            end = line.find("*/")
            body, rest = (line, "") if end < 0 else (line[:end], line[end:])
            out.append(text(body) + rest if end >= 0 else text(body))
            in_comment = end < 0
            continue
        if RULER.match(line):
            out.append(line)
            continue
        m = re.match(r"^(\s*)/\*(?!\*)\s?(.*)$", line)
        if m:
            body = m.group(2)
            end = body.find("*/")
            prefix = f"{m.group(1)}/** "
            if i == 0:
                prefix = "/** \\file\n" + prefix[4:].replace("/** ", " * ") + " * "
            if end >= 0:
                out.append(prefix + text(body[:end]) + body[end:] + "\n")
            else:
                out.append(prefix + text(body) + "\n")
                in_comment = True
            continue
        t = re.match(r'^(\s*[^"/\s][^"]*?[;,{]?)(\s*)/\*(?!\*)\s?(.*?)\*/\s*$', line)
        if t and t.group(1).strip():
            out.append(f"{t.group(1)}{t.group(2)}/**< {text(t.group(3))}*/\n")
            continue
        out.append(line)
    return out


def main():
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    if path.endswith(".md"):  # Markdown pages (docs/api.md): their code blocks stay as written
        sys.stdout.write("".join(lines))
        return
    c_style = path.endswith((".h", ".h.in"))
    sys.stdout.write("".join(filter_c(lines) if c_style else filter_cpp(lines)))


if __name__ == "__main__":
    main()
