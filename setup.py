# The C core is built by cffi in out-of-line API mode; see csrc/build_ffi.py.
# The GPU kernel sources (kernels/) ship as pygemma/kernels: they are compiled on the
# user's machine, on first use (pygemma/gpu).
import glob
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class build_py_with_kernels(build_py):
    def run(self):
        super().run()
        files = sorted(f for ext in ("cu", "cuh", "h") for f in glob.glob(os.path.join(HERE, "kernels", "*." + ext)))
        if files:
            dest = os.path.join(self.build_lib, "pygemma", "kernels")
            os.makedirs(dest, exist_ok=True)
            for f in files:
                shutil.copy2(f, dest)


setup(cffi_modules=["csrc/build_ffi.py:ffibuilder"], cmdclass={"build_py": build_py_with_kernels})
