#!/usr/bin/env python3
"""Makes src/netpolicy/public_suffixes.txt from a Public Suffix List file
(https://publicsuffix.org/list/): its rules, ICANN and private sections,
one per line, lower case, international names in their ASCII (punycode)
form, as the allowlist's names are written; wildcard (`*.ck`) and exception
(`!www.ck`) rules as they are. sbx-oci refuses a wildcard over a public
suffix (src/netpolicy/names.rs::is_public_suffix).

    python3 tools/public-suffixes.py [/usr/share/publicsuffix/public_suffix_list.dat]

(Debian's `publicsuffix` package installs the list there.)
"""
import os
import subprocess
import sys

SOURCE = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/publicsuffix/public_suffix_list.dat"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "netpolicy",
                   "public_suffixes.txt")


def ascii_label(label):
    if label in ("*",) or label.isascii():
        return label.lower()
    try:
        return label.encode("idna").decode("ascii")
    except UnicodeError:
        return "xn--" + label.encode("punycode").decode("ascii")


def main():
    rules = []
    version = ""
    with open(SOURCE, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("// VERSION:"):
                version = line[len("// VERSION:"):].strip()
            if not line or line.startswith("//"):
                continue
            rule = line.split()[0]
            bang = rule.startswith("!")
            name = ".".join(ascii_label(l) for l in rule.lstrip("!").split("."))
            rules.append(("!" if bang else "") + name)
    if not version and SOURCE.startswith("/usr/share/publicsuffix/"):
        deb = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "publicsuffix"],
                             capture_output=True, text=True).stdout.strip()
        version = f"Debian's publicsuffix {deb}" if deb else ""
    with open(OUT, "w", encoding="ascii") as f:
        f.write("// The Public Suffix List (https://publicsuffix.org/), Mozilla Public License 2.0:\n")
        f.write(f"// its rules in ASCII, made by tools/public-suffixes.py from {os.path.basename(SOURCE)}"
                + (f" ({version})" if version else "") + ".\n")
        for r in rules:
            f.write(r + "\n")
    print(f"{len(rules)} rules -> {os.path.relpath(OUT)}")


if __name__ == "__main__":
    main()
