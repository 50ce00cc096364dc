"""Shared fixtures: everything is made here, offline (no Hub access is ever needed)."""

import os

# Tests never reach the Hub; any accidental download fails fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The suite runs in pytest-xdist workers (pyproject.toml), which share the machine's cores: torch in each worker, and
# in the processes its tests start, gets its share of them. Set before torch is imported; threads that outnumber the
# cores wait on each other (on 2 shared cores, two threads per process made tiny-model steps many times slower).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _share = (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _share)))

import pytest  # noqa: E402


def pytest_collection_modifyitems(items):
    """The quick demo's tests first: its file takes four to six minutes on one worker, while the other runs the rest.
    pyproject.toml keeps this order (`--no-loadscope-reorder`): pytest-xdist's default hands out the files with the
    most tests first, and the demo's (12 tests) then started after four minutes of other files on the same worker,
    with the other idle by the end (9 min 18 s against 8 min 9 s this way, back to back; README)."""
    items.sort(key=lambda item: item.path.name != "test_demo.py")


def refused(capfd, argv: list[str], message: str) -> str:
    """`aro argv` exits 2 with one error line holding `message`, and no traceback (of worker processes either);
    the line is returned. `capfd` is pytest's fixture: it sees what worker processes write too."""
    from aro.cli import main

    code = main(argv)
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith(f"aro {argv[0]}: error:")]
    assert code == 2, err
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err and "DataLoader worker" not in err, err
    return errors[0]


TINY_WORDS = (
    "a an the red green blue yellow small large circle square triangle star left right of above below to and is".split()
)


def random_image(seed: int):
    """A seeded 36 x 40 RGB image of random pixels: distinct images for the scorers' tests."""
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 36, 3), dtype=np.uint8))


@pytest.fixture(autouse=True)
def fresh_datasets_cache(tmp_path_factory, monkeypatch):
    """Each test its own datasets cache: `datasets` keys a local folder's cache by its name, and tests reuse names."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("datasets-cache")))


@pytest.fixture(scope="session")
def spacy_nlp():
    """The default English spaCy pipeline with tagging only (shared: it takes seconds to load)."""
    from aro.builders.text import load_spacy

    return load_spacy()


@pytest.fixture(scope="session")
def spacy_parser():
    """The default English spaCy pipeline with tagging and parsing, as the miner needs (shared, like `spacy_nlp`)."""
    from aro.builders.text import load_spacy

    return load_spacy(keep=("tok2vec", "tagger", "attribute_ruler", "parser"))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A saved tiny random `CLIPModel` and `CLIPProcessor` (word-level tokenizer over TINY_WORDS)."""
    from aro.models.tiny_clip import make_tiny_clip

    model, processor = make_tiny_clip(TINY_WORDS, image_size=32, seed=0)
    path = tmp_path_factory.mktemp("tiny-clip")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def scenes(tmp_path_factory):
    """A tiny synthetic ARO world: the `scenes` image-caption config (72 training rows) and the ARO configs."""
    from aro.builders.synthetic import SyntheticSizes, build_synthetic_aro

    folder = tmp_path_factory.mktemp("scenes") / "data"
    build_synthetic_aro(
        folder,
        sizes=SyntheticSizes(
            train_scenes=24, test_scenes=8, relation_per_relation=2, attribution_per_pair=1, order_captions=4
        ),
    )
    return folder


@pytest.fixture(scope="session")
def start_model(tmp_path_factory):
    """A saved tiny CLIP over the synthetic world's words, the model that training starts from."""
    from aro.builders.synthetic import world_words
    from aro.models.tiny_clip import make_tiny_clip

    model, processor = make_tiny_clip(world_words(), image_size=32, patch_size=16, hidden_size=32, num_layers=1)
    folder = tmp_path_factory.mktemp("start")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def train_argv(scenes, start_model):
    """`aro train` arguments for fast runs on `scenes` from `start_model`; keywords add or change flags (True: a
    bare flag)."""

    def argv(output_dir, **flags) -> list[str]:
        options = dict(
            output_dir=output_dir,
            model_name_or_path=start_model,
            dataset=scenes,
            dataset_config="scenes",
            learning_rate=1e-3,
            warmup_steps=1,
            report_to="none",
        )
        words = ["train"]
        for name, value in (options | flags).items():
            words.append("--" + name.replace("_", "-"))
            if value is not True:
                words += [str(item) for item in value] if isinstance(value, list) else [str(value)]
        return words

    return argv


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run far faster on one thread than on two threads of a shared 2-core machine (a module opts in
    with `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def without_package(package: str) -> str:
    """Python source that makes `package` look uninstalled to the script that follows it in a `python -c`:
    `importlib.util.find_spec` does not see it (transformers' check) and importing it fails."""
    return f"""
import importlib.util
import sys


class Without:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {package!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)


find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: (
    None if name.split(".")[0] == {package!r} else find_spec(name, package)
)
sys.meta_path.insert(0, Without())
"""
