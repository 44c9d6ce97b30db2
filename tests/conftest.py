"""Shared fixtures: a user dir in tmp, the exoplanets DB, a tiny 3-table DB."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

# The hub is unreachable here: fail fast instead of retrying (read by huggingface_hub at import).
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest


@pytest.fixture(autouse=True)
def _sqltune_home(tmp_path_factory, monkeypatch):
    """Every test gets its own cache folder, except the exoplanets DB which is shared (read-only)."""
    home = tmp_path_factory.getbasetemp() / "sqltune_home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("SQLTUNE_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of tiny-model tests (`pytestmark = pytest.mark.usefixtures(
    "one_thread")`): tiny models run far faster so, and do not fight other processes for the cores."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def exo_db(tmp_path_factory) -> Path:
    from sqltune.db import build_exoplanets_db

    return build_exoplanets_db(tmp_path_factory.mktemp("exo") / "exoplanets.sqlite")


TINY_SQL = """
CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT);
CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT, author_id INTEGER REFERENCES authors(id),
                    year INTEGER, price REAL);
CREATE TABLE sales (book_id INTEGER REFERENCES books(id), month TEXT, copies INTEGER);
INSERT INTO authors VALUES (1,'Ada','UK'),(2,'Borges','AR'),(3,'Calvino','IT'),(4,'Dickens','UK');
INSERT INTO books VALUES (1,'Notes',1,1843,10.5),(2,'Ficciones',2,1944,12.0),(3,'Aleph',2,1949,11.0),
  (4,'Cities',3,1972,9.0),(5,'Bleak House',4,1853,8.5),(6,'Hard Times',4,1854,NULL);
INSERT INTO sales VALUES (1,'2024-01',5),(2,'2024-01',7),(2,'2024-02',3),(3,'2024-02',4),(4,'2024-01',9),
  (5,'2024-03',2),(6,'2024-03',1);
"""


def make_tiny_db(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.executescript(TINY_SQL)
    con.commit()
    con.close()
    return path


@pytest.fixture
def tiny_db(tmp_path) -> Path:
    return make_tiny_db(tmp_path / "tiny.sqlite")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama with SmolLM2's real tokenizer, as a Hugging Face folder."""
    from tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_model") / "model")


def random_weights(tiny_model_dir, scale: float):
    """The tiny model with its matrices redrawn at `scale` (seeded), on one thread while in use: a 64-wide
    model gains nothing from more, and loses a lot on a busy shared CPU. Yields (model, tokenizer)."""
    import torch

    from sqltune.model import load_model, pick_device

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, tok, _ = load_model(str(tiny_model_dir), pick_device("cpu", "float32"))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    yield model, tok
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def chaotic(tiny_model_dir):
    """The tiny model with large random weights, so that its greedy output depends on the prompt."""
    yield from random_weights(tiny_model_dir, 0.3)


@pytest.fixture(scope="module")
def looping(tiny_model_dir):
    """The tiny model with small random weights: greedy, it repeats a token or two after a while."""
    yield from random_weights(tiny_model_dir, 0.1)


@pytest.fixture(scope="module")
def taught_db(tmp_path_factory) -> Path:
    """A tiny DB of the module's own (tests may check it is left byte-identical), for the taught model."""
    return make_tiny_db(tmp_path_factory.mktemp("taught_db") / "tiny.sqlite")


@pytest.fixture(scope="module")
def taught(tiny_model_dir, taught_db, tmp_path_factory) -> Path:
    """The tiny model taught to answer every question about the tiny DB with one query (tests/taught.py)."""
    from taught import make_taught_model

    return make_taught_model(tiny_model_dir, taught_db, tmp_path_factory.getbasetemp() / "taught_model")
