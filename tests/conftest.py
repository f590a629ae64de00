from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def encoder_file(tmp_path):
    """A small random ConvNet saved as an encoder file, as `--encoder` takes it."""
    from infomax.models import build_encoder
    from infomax.models.registry import save_encoder

    torch.manual_seed(0)
    path = tmp_path / "encoder.safetensors"
    save_encoder(build_encoder("convnet", width=4), path)
    return path


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_configure(config):
    torch.set_num_threads(1)
    # Lightning binds its log handler to sys.stderr when first imported: import it now, before any test's
    # captured stream stands in for stderr (and is closed after that test, breaking every later log line).
    import lightning.fabric  # noqa: F401
