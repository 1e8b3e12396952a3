#!/usr/bin/env python3
"""Unpack the rag image's embedding model and its tokenizer library from wheels.

The wheels are fetched on the host (scripts/fetch-wheels.sh, pins in
images/rag/wheels.txt); nothing here touches a network:

- ``tokenizers`` (a binary wheel for CPython 3.11) is unpacked into --site, a
  directory the agent puts on its sys.path (a wheel is an importable tree).
- From the ``wordllama`` wheel only its data is taken, into --model: the
  ``l2_supercat`` token vectors (256 dimensions) as ``embeddings.safetensors``
  and their tokenizer as ``tokenizer.json``. Its Python code (which would fetch
  files from a model hub when they are missing) is not installed.

Used by images/rag/Dockerfile and, on a host, by scripts/bench_rag_quality.py.
Standard library only.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import zipfile

MODEL_MEMBERS = {
    "wordllama/weights/l2_supercat_256.safetensors": "embeddings.safetensors",
    "wordllama/tokenizers/l2_supercat_tokenizer_config.json": "tokenizer.json",
}
LICENSE_MEMBER = "licenses/LICENSE"


def wheel(directory: str, project: str) -> str:
    """The one wheel of `project` in `directory`."""
    found = sorted(glob.glob(os.path.join(directory, f"{project}-*.whl")))
    if len(found) != 1:
        sys.exit(f"unpack_model: expected one {project} wheel in {directory}, found {found}")
    return found[0]


def unpack_model(wheels: str, model: str) -> None:
    """The token vectors, tokenizer and licence of the wordllama wheel into `model`."""
    os.makedirs(model, exist_ok=True)
    with zipfile.ZipFile(wheel(wheels, "wordllama")) as archive:
        names = archive.namelist()
        for member, target in MODEL_MEMBERS.items():
            with archive.open(member) as source, open(os.path.join(model, target), "wb") as out:
                shutil.copyfileobj(source, out)
        licence = [name for name in names if name.endswith(LICENSE_MEMBER)]
        if licence:
            with (
                archive.open(licence[0]) as source,
                open(os.path.join(model, "LICENSE.wordllama"), "wb") as out,
            ):
                shutil.copyfileobj(source, out)


def unpack_site(wheels: str, site: str) -> None:
    """The tokenizers wheel, unpacked where Python can import it."""
    os.makedirs(site, exist_ok=True)
    with zipfile.ZipFile(wheel(wheels, "tokenizers")) as archive:
        archive.extractall(site)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels", required=True, help="directory holding the pinned wheels")
    parser.add_argument("--model", help="write the model files here")
    parser.add_argument("--site", help="unpack the tokenizers wheel here")
    args = parser.parse_args(argv)
    if args.model:
        unpack_model(args.wheels, args.model)
    if args.site:
        unpack_site(args.wheels, args.site)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
