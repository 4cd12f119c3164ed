"""The functions a callgrind run of mip4d ran, as the dist build names them.

text-order.py CALLGRIND_OUT SYM_BINARY DIST_MAP OUT (scripts/text-order.sh):
CALLGRIND_OUT is from a dist build with symbols (SYM_BINARY), DIST_MAP the
linker map of the dist build proper. Rust's symbol names hold hashes that
differ between the two, so a function is found by its demangled name
without them and, among the instances of a generic function (legacy names
differ only in the hash), by its size: the code is the same.
"""
import re
import subprocess
import sys

cg, sym_binary, mapfile, out = sys.argv[1:]


def demangle(names):
    r = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True)
    return r.stdout.splitlines()


def hashless(s):
    # legacy ::h<16 hex>, v0 crate disambiguators [<hex>]
    return re.sub(r"\[[0-9a-f]+\]", "", re.sub(r"::h[0-9a-f]{16}$", "", s))


# Functions of mip4d that ran, in the order callgrind lists them.
ran, obs, fns, ob = [], {}, {}, None
for line in open(cg):
    m = re.match(r"^(c?ob|c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
    if not m:
        continue
    kind, ident, name = m.groups()
    table = obs if kind.endswith("ob") else fns
    if name:
        table[ident] = name
    if kind == "ob":
        ob = obs[ident]
    elif kind == "fn" and ob and ob.endswith("/mip4d"):
        ran.append(fns[ident])
ran = list(dict.fromkeys(ran))

size = {}
nm = subprocess.run(["nm", "-S", sym_binary], capture_output=True, text=True).stdout
for line in nm.splitlines():
    p = line.split()
    if len(p) == 4 and p[2] in "tTwW":
        size[p[3]] = int(p[1], 16)

# Every function section of the dist build, with its size (lld's map:
# VMA LMA SIZE ALIGN FILE:(SECTION)).
sections = re.findall(
    r"^\s*[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s+\S*:\(\.text\.([^)\s]+)\)",
    open(mapfile).read(),
    re.M,
)
by_name = {}
for (sz, sym), d in zip(sections, demangle([n for _, n in sections])):
    by_name.setdefault(hashless(d), []).append((sym, int(sz, 16)))

order = []
for fn, d in zip(ran, demangle(ran)):
    found = by_name.get(hashless(d), [])
    same = [s for s, sz in found if sz == size.get(fn)]
    order.extend(same or [s for s, _ in found])
order = list(dict.fromkeys(order))
with open(out, "w") as f:
    f.write("\n".join(order) + "\n")
print(f"{out}: {len(order)} symbols for the {len(ran)} functions that ran", file=sys.stderr)
