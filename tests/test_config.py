import pytest

from vcam_me.config import DEFAULT_CONFIG_PATH, AppConfig, config_from_dict, load_config
from vcam_me.errors import ConfigError


def test_default_file_matches_dataclass_defaults():
    assert load_config(use_user_config=False) == AppConfig()


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"output": {"fps": 45}}, r"output.fps = 45: expected 60 or 30"),
        ({"output": {"width": 1281}}, r"output.width = 1281: allowed an even number"),
        ({"capture": {"pace": "slow"}}, r"capture.pace = 'slow': expected 'realtime' or 'fast'"),
        ({"capture": {"camera_index": "zero"}}, r"capture.camera_index = 'zero': expected an integer"),
        ({"capture": {"colour": 1}}, r"capture.colour: unknown key \(allowed in \[capture\]:"),
        ({"nonsense": {}}, r"\[nonsense\]: unknown section"),
        ({"label": {"enabled": False}}, r"label.enabled: the AI label and consent mark cannot be switched off"),
        ({"watermark": {"enabled": False}}, r"cannot be switched off"),
        ({"label": {"banner_seconds": 1}}, r"at least 2 s"),
        ({"expression": {"interpolation_delay_ms": "soon"}}, r"expected an integer or 'auto'"),
        ({"micro": {"mode": "often"}}, r"micro.mode = 'often': allowed \"none\", \"auto\" or the path of a .json script"),
        ({"micro": {"intensity": "B-A"}}, r"micro.intensity = 'B-A': allowed a FACS letter A..E or a range"),
        ({"micro": {"held_intensity": "F"}}, r"micro.held_intensity = 'F': allowed a FACS letter"),
        ({"micro": {"rate_per_min": 100}}, r"micro.rate_per_min = 100.0: allowed 0..60"),
        ({"micro": {"seed": -2}}, r"micro.seed = -2: allowed \"random\" or an integer ≥ 0"),
    ],
)
def test_invalid_values_name_key_and_allowed_values(doc, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(doc)


def test_overrides_apply_and_ints_widen_to_floats():
    cfg = config_from_dict({"output": {"fps": 30}, "capture": {"reconnect_interval_s": 2}})
    assert cfg.output.fps == 30 and cfg.capture.reconnect_interval_s == 2.0
    assert config_from_dict({"expression": {"interpolation_delay_ms": 20}}).expression.interpolation_delay_ms == 20


def test_file_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[output\nfps=", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, use_user_config=False)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml", use_user_config=False)


def test_default_config_is_in_the_repo():
    assert DEFAULT_CONFIG_PATH.is_file()
