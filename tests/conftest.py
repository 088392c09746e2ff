"""Shared fixtures: tiny corpora built on the fly, and one small trained vocabulary."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rbprep.corpus import ReadStats, open_corpus

SMALL_TEXT = """The quick brown fox jumps over the lazy dog.
A second line of the first document.

Second document, one line only.

Third document: naïve café, Zürich, emoji 🙂, 中文字符, العربية.
Its last line.
"""


def read_documents(paths, **options) -> tuple[list[list[str]], ReadStats]:
    """Read a corpus through the public reader; return its documents' units and stats."""
    corpus = open_corpus([str(p) for p in paths], **options)
    stats = ReadStats()
    documents = [document.units for document in corpus.documents(stats)]
    return documents, stats


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "small.txt"
    path.write_text(SMALL_TEXT, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _rbprep_warnings_propagate():
    """Let caplog see rbprep's warnings even after a CLI run turned propagation off."""
    logger = logging.getLogger("rbprep")
    logger.propagate = True
    yield
    logger.propagate = True


@pytest.fixture(scope="session")
def builtin_corpus(tmp_path_factory) -> Path:
    from rbprep.corpus.builtin import builtin_corpus_path

    return builtin_corpus_path(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def small_vocab(tmp_path_factory, builtin_corpus) -> Path:
    """Both tokenizers trained once on a 2 MB sample of the built-in corpus."""
    from rbprep.vocab import VocabConfig, train_vocab

    out = tmp_path_factory.mktemp("vocab")
    train_vocab(
        [builtin_corpus],
        out,
        VocabConfig(bpe_size=4000, wordpiece_size=3000, sample_bytes=2_000_000),
        force=True,
    )
    return out


@dataclass
class ObjectStore:
    """A bucket on a real S3 endpoint on 127.0.0.1 (moto's server, spoken to over HTTP by
    pyarrow's own S3 client): ``uri("a/b")`` names an object or prefix in it."""

    filesystem: Any
    bucket: str
    query: str

    def uri(self, path: str) -> str:
        return f"s3://{self.bucket}/{path.strip('/')}{self.query}"

    def upload(self, source: Path, prefix: str) -> str:
        """Copy a local file or folder under ``prefix``; return the prefix's URI."""
        import pyarrow.fs as pafs

        target = f"{self.bucket}/{prefix.strip('/')}"
        if source.is_dir():
            pafs.copy_files(str(source), target, destination_filesystem=self.filesystem)
        else:
            pafs.copy_files(
                str(source), f"{target}/{source.name}", destination_filesystem=self.filesystem
            )
        return self.uri(prefix)

    def download(self, prefix: str) -> dict[str, bytes]:
        """Every object under ``prefix``: name relative to it -> bytes."""
        import pyarrow.fs as pafs

        base = f"{self.bucket}/{prefix.strip('/')}"
        selector = pafs.FileSelector(base, recursive=True)
        files = {}
        for info in self.filesystem.get_file_info(selector):
            if info.type == pafs.FileType.File:
                with self.filesystem.open_input_stream(info.path) as stream:
                    files[info.path[len(base) + 1 :]] = stream.read()
        return files


@pytest.fixture(scope="session")
def object_store() -> Iterator[ObjectStore]:
    """An S3 endpoint on loopback with an empty bucket, for the whole session.

    Credentials are dummies in the environment, where pyarrow (and Dask worker processes
    started later) find them, as they would real ones."""
    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    os.environ.update(
        AWS_ACCESS_KEY_ID="rbprep-test",
        AWS_SECRET_ACCESS_KEY="rbprep-test",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    filesystem = pafs.S3FileSystem(
        endpoint_override=f"{host}:{port}", scheme="http", allow_bucket_creation=True
    )
    filesystem.create_dir("rbprep-test")
    yield ObjectStore(filesystem, "rbprep-test", f"?endpoint_override={host}:{port}&scheme=http")
    server.stop()


@pytest.fixture
def replacing_bpe(tmp_path: Path, small_vocab: Path) -> Path:
    """train-vocab's BPE with a Replace normaliser ("zq" -> "Z"): a real disagreement,
    as tokie 0.1.4 ignores it, on text the probe set never spells."""
    tokenizer = tmp_path / "replace"
    shutil.copytree(small_vocab / "bpe", tokenizer)
    config = json.loads((tokenizer / "tokenizer.json").read_text())
    config["normalizer"] = {"type": "Replace", "pattern": {"String": "zq"}, "content": "Z"}
    (tokenizer / "tokenizer.json").write_text(json.dumps(config))
    return tokenizer
