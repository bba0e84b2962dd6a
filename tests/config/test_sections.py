"""Config sections: strict values, errors that name the key, and a layer that stands alone."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from fedsov.config import (
    SITE_ACCOUNTANTS,
    Backoff,
    ModelConfig,
    PrivacyConfig,
    ServerTable,
    SiteDPSettings,
    TrainingPlan,
    dump_toml,
    read_toml,
    section,
    validate,
)
from fedsov.config.base import Section
from fedsov.exceptions import ConfigError
from fedsov.privacy import accountant

ROOT = Path(__file__).resolve().parents[2]


@section
class _Doc(Section):
    model: ModelConfig
    training: TrainingPlan = dataclasses.field(default_factory=TrainingPlan)
    reconnect: Backoff = dataclasses.field(default_factory=Backoff)
    server: ServerTable | None = None


def load(tmp_path: Path, text: str) -> _Doc:
    path = tmp_path / "doc.toml"
    path.write_text(text)
    return validate(_Doc, read_toml(path)[1], file=path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    message = str(info.value)
    prefix = f"{tmp_path / 'doc.toml'}: "
    assert message.startswith(prefix)
    return message.removeprefix(prefix)


MODEL = '[model]\nfactory = "m:f"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[modle]\n", "model: is required (found 'modle': a typo?)"),
        ("", "model: is required"),
        (
            "x = 1\n" + MODEL,
            "top level: unknown key 'x' (known: model, reconnect, server, training)",
        ),
        (
            MODEL + "[training]\nbatch = 3\n",
            "[training]: unknown key 'batch' (did you mean 'batch_size'?)",
        ),
        (
            MODEL + "[training]\nbatch_size = true\n",
            "training.batch_size: must be an integer, got True",
        ),
        (MODEL + "[training]\nbatch_size = 0\n", "training.batch_size: must be >= 1, got 0"),
        (
            MODEL + "[training]\nlearning_rate = 0\n",
            "training.learning_rate: must be > 0.0, got 0.0",
        ),
        (
            MODEL + "[training]\nlearning_rate = nan\n",
            "training.learning_rate: must be finite, got nan",
        ),
        (
            MODEL + '[training]\nmomentum = "0.9"\n',
            "training.momentum: must be a number, got '0.9'",
        ),
        (MODEL + "[training]\nmomentum = 1\n", "training.momentum: must be < 1.0, got 1.0"),
        (
            MODEL + "[training]\nproximal_mu = -0.1\n",
            "training.proximal_mu: must be >= 0.0, got -0.1",
        ),
        ("training = 3\n" + MODEL, "training: must be a table, got 3"),
        ("[model]\nfactory = 3\n", "model.factory: must be a string, got 3"),
        (
            MODEL + "[reconnect]\nmax_backoff_s = 0\n",
            "reconnect.max_backoff_s: must be > 0.0, got 0.0",
        ),
        (
            MODEL + '[server]\naddress = "h:1"\ninsecure = true\ncert = "c"\n',
            "server.cert: makes no sense with insecure = true",
        ),
        (
            MODEL + '[server]\naddress = "h:1"\n',
            "server.cert: is required: mTLS is on by default "
            "(set insecure = true only for local development)",
        ),
    ],
)
def test_errors_name_the_section_and_key(tmp_path: Path, text: str, message: str) -> None:
    assert error(tmp_path, text) == message


def test_integers_are_numbers_and_defaults_fill_in(tmp_path: Path) -> None:
    doc = load(tmp_path, MODEL + "[training]\nlearning_rate = 2\n[reconnect]\nmax_attempts = 3\n")
    assert doc.training == TrainingPlan(1, 64, 2.0, 0.0)
    assert isinstance(doc.training.learning_rate, float)
    assert doc.reconnect == Backoff(initial_s=0.5, max_s=30.0, max_attempts=3)


def test_relative_paths_resolve_beside_the_file(tmp_path: Path) -> None:
    doc = load(
        tmp_path, MODEL + '[server]\naddress = "h:1"\ncert = "a/c.pem"\nkey = "/k"\nca = "~/ca"\n'
    )
    assert doc.server is not None
    tls = doc.server.endpoint().tls
    assert tls is not None
    assert tls.cert == (tmp_path / "a" / "c.pem").resolve()
    assert tls.key == Path("/k")
    assert tls.ca == Path("~/ca").expanduser()


def test_sections_built_in_code_are_validated_too() -> None:
    assert TrainingPlan(2, 8, 0.5) == TrainingPlan(local_epochs=2, batch_size=8, learning_rate=0.5)
    with pytest.raises(ConfigError, match=r"^training\.local_epochs: must be >= 1, got 0$"):
        TrainingPlan(0, 8, 0.5)
    with pytest.raises(ConfigError, match=r"^training\.batch_size: must be >= 1, got 0$"):
        dataclasses.replace(TrainingPlan(), batch_size=0)
    with pytest.raises(ConfigError, match=r"^\[training\]: unknown key 'epochs'"):
        TrainingPlan(epochs=2)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainingPlan().batch_size = 3  # type: ignore[misc]


def test_the_writer_writes_what_the_reader_reads(tmp_path: Path) -> None:
    doc = _Doc(
        model=ModelConfig("m:f", {"hidden": 3, "name": "x"}),
        training=TrainingPlan(3, 16, 0.25, 0.5),
        reconnect=Backoff(0.2, 5.0, 20),
        server=ServerTable(address="127.0.0.1:0", insecure=True),
    )
    path = tmp_path / "doc.toml"
    path.write_text(dump_toml(dataclasses.asdict(doc) | {"reconnect": doc.reconnect}))
    assert "initial_backoff_s = 0.2" in path.read_text()  # the file's key, not the field's
    assert validate(_Doc, read_toml(path)[1], file=path) == doc


def test_site_dp_none_values_are_left_out_of_a_file() -> None:
    text = dump_toml({"site_dp": SiteDPSettings(clip=1.0, noise_multiplier=0.5)})
    assert "expected_sites" not in text and "clip = 1.0" in text


def test_the_site_accountants_are_the_privacy_packages() -> None:
    assert SITE_ACCOUNTANTS == accountant.SITE_ACCOUNTANTS
    with pytest.raises(ConfigError, match=r"privacy\.accountant: 'rdp' is not one of pld"):
        PrivacyConfig(accountant="rdp")


def test_fedsov_config_is_the_bottom_layer() -> None:
    code = (
        "import sys, fedsov.config; print(sorted(m for m in sys.modules if m.startswith('fedsov')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(ast.literal_eval(out.stdout))
    assert {m for m in loaded if not m.startswith("fedsov.config")} <= {
        "fedsov",
        "fedsov.exceptions",
    }


def test_the_plan_imports_no_role() -> None:
    tree = ast.parse((ROOT / "fedsov" / "policy" / "plan.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    fedsov = {m for m in imported if m.startswith("fedsov")}
    assert fedsov <= {"fedsov.config", "fedsov.exceptions", "fedsov.pki.identity"}, fedsov
