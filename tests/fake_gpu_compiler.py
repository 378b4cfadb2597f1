#!/usr/bin/env python3
"""A stand-in for nvcc / hipcc in tests: records its arguments and writes plausible outputs.

Installed (copied) as `nvcc` and `hipcc` in a temporary PATH directory.  Environment:
  FAKE_GPU_LOG    append one JSON line {"tool", "argv", "pid"} per call to this file
  FAKE_GPU_SLEEP  seconds each compile takes
  FAKE_GPU_FAIL   a compile whose source contains this text fails with a compiler-style error
  FAKE_GPU_VERSION the version to report (default 12.4.131 / 6.1.40091)
An "object" is the text `OBJ <source> <sha256 of the source and its quoted includes>`; the
"library" is `LIB` followed by the objects, so tests can tell what was compiled from what.
"""
import hashlib
import json
import os
import re
import sys
import time

tool = os.path.basename(sys.argv[0])
argv = sys.argv[1:]
if os.environ.get("FAKE_GPU_LOG"):
    with open(os.environ["FAKE_GPU_LOG"], "a") as f:
        f.write(json.dumps({"tool": tool, "argv": argv, "pid": os.getpid()}) + "\n")
if "--version" in argv:
    if tool == "nvcc":
        v = os.environ.get("FAKE_GPU_VERSION", "12.4.131")
        print(f"nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release "
              f"{'.'.join(v.split('.')[:2])}, V{v}")
    else:
        print(f"HIP version: {os.environ.get('FAKE_GPU_VERSION', '6.1.40091')}-fake\nclang version 17.0.0")
    sys.exit(0)
out = argv[argv.index("-o") + 1]
if "-c" in argv:
    src = argv[argv.index("-c") + 1]
    with open(src) as f:
        text = f.read()
    if os.environ.get("FAKE_GPU_FAIL") and os.environ["FAKE_GPU_FAIL"] in text:
        print(f"{src}(3): error: identifier \"{os.environ['FAKE_GPU_FAIL']}\" is undefined", file=sys.stderr)
        print("1 error detected in the compilation of " + src, file=sys.stderr)
        sys.exit(2)
    time.sleep(float(os.environ.get("FAKE_GPU_SLEEP", "0")))
    headers = [os.path.join(os.path.dirname(src), h) for h in re.findall(r'#include "([^"]+)"', text)]
    h = hashlib.sha256(text.encode())
    for path in headers:
        with open(path, "rb") as f:
            h.update(f.read())
    with open(out, "w") as f:
        f.write(f"OBJ {os.path.basename(src)} {h.hexdigest()}\n")
    if "-MF" in argv:
        with open(argv[argv.index("-MF") + 1], "w") as f:
            f.write(f"{out}: {src} " + " ".join(headers) + "\n")
else:
    objs = [a for a in argv if a.endswith(".o")]
    with open(out, "w") as f:
        f.write("LIB\n")
        for o in objs:
            with open(o) as g:
                f.write(g.read())
