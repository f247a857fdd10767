from pathlib import Path

import pytest

from crosearch.config import Config, dump_config, load_config, parse_override
from crosearch.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_load():
    config = load_config()
    assert isinstance(config, Config)
    assert config.data.setting == "full"


def test_override_types_are_parsed_as_yaml():
    config = load_config(None, ["data.seed=7", "data.setting=gap", "data.languages=[en, zh]", "data.gap_keep=0.25"])
    assert config.data.seed == 7
    assert config.data.setting == "gap"
    assert config.data.languages == ["en", "zh"]
    assert config.data.gap_keep == 0.25


def test_unknown_key_names_key_and_allowed_keys():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["data.sed=1"])
    message = str(info.value)
    assert "data.sed" in message
    assert "seed" in message and "setting" in message


def test_unknown_section_names_allowed_sections():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["dtaa.seed=1"])
    assert "dtaa" in str(info.value)
    assert "data" in str(info.value) and "retrieval" in str(info.value)


def test_bad_literal_value_names_allowed_values():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["data.setting=partial"])
    message = str(info.value)
    assert "data.setting" in message
    assert "'full'" in message and "'gap'" in message and "'no-native'" in message
    assert "partial" in message


def test_out_of_range_value_rejected():
    with pytest.raises(ConfigError, match="data.gap_keep"):
        load_config(None, ["data.gap_keep=1.5"])


def test_malformed_override():
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("data.seed")
    with pytest.raises(ConfigError, match="empty key"):
        parse_override("data..seed=1")


def test_yaml_file_errors(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="not found"):
        load_config(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)
    typo = tmp_path / "typo.yaml"
    typo.write_text("data:\n  setting: gap\n  sede: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(typo)
    assert str(typo) in str(info.value) and "data.sede" in str(info.value)


def test_every_recipe_in_configs_is_valid():
    recipes = sorted((REPO / "configs").glob("*.yaml"))
    assert recipes, "configs/ should ship recipes"
    for recipe in recipes:
        if "arms" in (__import__("yaml").safe_load(recipe.read_text()) or {}):
            continue  # an experiment recipe (crosearch experiment): checked in tests/test_experiment.py
        config = load_config(recipe)
        # round trip: the dumped config loads back to the same values
        again = Config.model_validate(__import__("yaml").safe_load(dump_config(config)))
        assert again == config, recipe


def test_grpo_options_moved_to_trl_args_are_named():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.epsilon=0.3", "train.warmup_ratio=0.1"])
    message = str(info.value)
    assert "'train.epsilon' is now set as 'train.trl_args.epsilon'" in message
    assert "'train.warmup_ratio' is now set as 'train.trl_args.warmup_steps" in message
    config = load_config(None, ["train.trl_args.epsilon=0.3"])
    assert config.train.trl_args == {"epsilon": 0.3}


def test_config_path_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="is a directory; --config takes a YAML file"):
        load_config(tmp_path)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("data:\n  source: café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(invalid continuation byte at byte 19\)"):
        load_config(latin1)
    # Through the command line: one line, no traceback.
    from typer.testing import CliRunner

    from crosearch.cli import app

    for path in (tmp_path, latin1, tmp_path / "missing.yaml"):
        result = CliRunner().invoke(app, ["data", "build", "--out", str(tmp_path / "o"), "-c", str(path)])
        assert result.exit_code != 0 and isinstance(result.exception, ConfigError), result.output
    assert not (tmp_path / "o").exists()


def test_yaml_duplicate_keys_are_refused(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("data:\n  seed: 1\n  setting: gap\n  seed: 2\n")
    with pytest.raises(ConfigError, match=r"dup.yaml, line 4: duplicate key 'seed' \(first on line 2\)"):
        load_config(dup)
    dup.write_text("data:\n  seed: 1\ndata:\n  seed: 2\n")
    with pytest.raises(ConfigError, match="line 3: duplicate key 'data'"):
        load_config(dup)
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        parse_override("retrieval.x={a: 1, a: 2}")
    # The same keys in different mappings are fine.
    ok = tmp_path / "ok.yaml"
    ok.write_text("data:\n  seed: 1\ntrain:\n  seed: 2\n")
    assert load_config(ok).data.seed == 1
