"""The embedding model behind dense retrieval: static token vectors, averaged.

A text's vector is the mean of its tokens' vectors, L2-normalised, so the dot
product of two vectors is their cosine. No network runs at query time: a
lookup and a mean, about a millisecond for a query, and thousands of passages
a second when indexing (docs/benchmarks.md, "rag: relevance").

The model is a directory holding two files:

    tokenizer.json         a Hugging Face ``tokenizers`` tokenizer
    embeddings.safetensors one matrix (vocabulary x dimensions), float16 or float32

The rag image unpacks them from the WordLlama wheel (``l2_supercat``, 256
dimensions, MIT) at build time (`images/rag/unpack_model.py`); nothing is
fetched from a model hub, ever.

numpy (Debian's python3-numpy in the image) and ``tokenizers`` (a wheel fetched
on the host) are imported here only, and only when a model is loaded.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .corpus import Document

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Matrix = npt.NDArray[np.float32]

TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_FILE = "embeddings.safetensors"
# A passage's meaning is in its head; reading a 1 MB text whole would let one
# document hold up a call for seconds. Dense retrieval reads this many characters.
MAX_EMBED_CHARS = 4000
# Tokens gathered at once: bounds the transient (tokens x dimensions) array.
_TOKENS_PER_STEP = 32_768
_HEADER_MAX_BYTES = 1 << 20
_DTYPES = {"F16": "<f2", "F32": "<f4"}


class ModelError(Exception):
    """The model directory is missing a file or holds something unusable."""


def read_safetensors_matrix(path: str) -> Matrix:
    """The one matrix stored in safetensors file `path`, as float32.

    The format is an 8-byte little-endian header length, a JSON header naming
    each tensor's dtype, shape and byte range, then the bytes.

    Raises:
        ModelError: Not a safetensors file holding exactly one 2-D F16/F32 matrix.
        OSError: It cannot be read.
    """
    import numpy as np

    with open(path, "rb") as file:
        (length,) = struct.unpack("<Q", file.read(8) or b"\0" * 8)
        if not 0 < length <= _HEADER_MAX_BYTES:
            raise ModelError(f"{path}: not a safetensors file")
        try:
            header = json.loads(file.read(length))
        except ValueError:
            raise ModelError(f"{path}: its header is not JSON") from None
        data = file.read()
    if not isinstance(header, dict):
        raise ModelError(f"{path}: its header is not a JSON object")
    tensors = {name: info for name, info in header.items() if name != "__metadata__"}
    if len(tensors) != 1:
        raise ModelError(f"{path}: expected one tensor, found {len(tensors)}")
    (info,) = tensors.values()
    try:
        dtype = _DTYPES[info["dtype"]]
        rows, columns = (int(n) for n in info["shape"])
        start, end = (int(n) for n in info["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"{path}: the tensor is not a 2-D F16 or F32 matrix") from None
    values = np.frombuffer(data[start:end], dtype=dtype)
    if values.size != rows * columns or rows < 1 or columns < 1:
        raise ModelError(f"{path}: the tensor's bytes do not fill its shape")
    return np.ascontiguousarray(values.reshape(rows, columns), dtype=np.float32)


class StaticEmbedder:
    """A tokenizer and one vector per token: a text's vector is their normalised mean.

    Args:
        directory: The model directory (`TOKENIZER_FILE`, `WEIGHTS_FILE`).

    Attributes:
        name: Identifies the model's weights (a digest): vectors made by another
            model are never compared with this one's.
        dim: The vectors' dimensions.

    Raises:
        ModelError: A file is missing or unusable.
    """

    def __init__(self, directory: str) -> None:
        from tokenizers import Tokenizer

        weights = os.path.join(directory, WEIGHTS_FILE)
        vocabulary = os.path.join(directory, TOKENIZER_FILE)
        try:
            self._matrix = read_safetensors_matrix(weights)
            self._tokenizer = Tokenizer.from_file(vocabulary)
            digest = _sha256(weights)
        except (OSError, Exception) as exc:
            if isinstance(exc, ModelError):
                raise
            raise ModelError(f"cannot load the embedding model in {directory}: {exc}") from None
        self.dim = int(self._matrix.shape[1])
        self.name = f"static-{self.dim}-{digest[:16]}"

    @property
    def vector_bytes(self) -> int:
        """What one passage's vector costs in memory (float32), counted against a
        session's byte bound."""
        return self.dim * 4

    def embed(self, texts: Sequence[str]) -> Matrix:
        """One unit vector per text (a row of zeros for a text without tokens)."""
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(
            [text[:MAX_EMBED_CHARS] for text in texts], add_special_tokens=False
        )
        ids: list[list[int]] = [encoding.ids for encoding in encodings]
        start = 0
        while start < len(ids):
            # A step gathers at most _TOKENS_PER_STEP token vectors (one text may be more).
            stop, tokens = start, 0
            while stop < len(ids) and (
                stop == start or tokens + len(ids[stop]) <= _TOKENS_PER_STEP
            ):
                tokens += len(ids[stop])
                stop += 1
            self._pool(ids[start:stop], out[start:stop])
            start = stop
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def _pool(self, ids: list[list[int]], out: Matrix) -> None:
        import numpy as np

        lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        total = int(lengths.sum())
        if total == 0:
            return
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=total)
        np.clip(flat, 0, self._matrix.shape[0] - 1, out=flat)
        gathered = self._matrix[flat]
        filled = lengths > 0
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[filled]
        sums = np.add.reduceat(gathered, starts, axis=0)
        out[filled] = sums / lengths[filled, None]


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_embedder(directory: str | None) -> tuple[StaticEmbedder | None, str | None]:
    """The model in `directory`, or (None, why) when there is none or it is unusable."""
    if directory is None:
        return None, "no embedding model is configured (SANDBOX_RAG_MODEL)"
    if not os.path.isdir(directory):
        return None, f"the embedding model directory {directory} does not exist"
    try:
        return StaticEmbedder(directory), None
    except ModelError as exc:
        return None, str(exc)
    except ImportError as exc:
        return None, f"the embedding model needs numpy and tokenizers: {exc}"


def embedding_texts(documents: Sequence[Document]) -> list[str]:
    """What a passage's vector is made of: its title (when it has one) and text."""
    return [f"{d.title}\n{d.text}" if d.title else d.text for d in documents]


def as_blob(vector: Any) -> bytes:
    """A vector as stored: float16 little-endian bytes (half the disk of float32,
    no loss a cosine ranking notices)."""
    import numpy as np

    return bytes(np.asarray(vector, dtype="<f2").tobytes())
