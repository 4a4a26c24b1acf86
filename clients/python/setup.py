"""Build hook: generates the gRPC code from the repository's proto/ into the wheel.

Everything else is declared in pyproject.toml. The runtime requirements are pinned to at
least the grpcio-tools and protobuf versions that generated the code, because generated
modules refuse to load on an older runtime.
"""

import importlib.util
import shutil
from importlib.metadata import version
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

_spec = importlib.util.spec_from_file_location("quis_codegen", Path(__file__).resolve().parent / "quis_codegen.py")
codegen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(codegen)


class BuildWithGeneratedCode(build_py):
    def run(self):
        super().run()
        if not self.dry_run:
            # Start from nothing, so that code of a proto removed since the last build is not shipped.
            shutil.rmtree(Path(self.build_lib) / "quis", ignore_errors=True)
            codegen.generate(Path(self.build_lib))


setup(
    cmdclass={"build_py": BuildWithGeneratedCode},
    install_requires=[
        f"grpcio>={version('grpcio-tools')}",
        f"protobuf>={version('protobuf')},<{int(version('protobuf').split('.')[0]) + 1}",
        "grpcio-status>=1.60",
        "googleapis-common-protos>=1.60",
        "cryptography>=42",
    ],
)
