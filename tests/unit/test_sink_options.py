"""Each sink's options: its parser (good tables, every bad key, type and range with
its message), its renderer, and the registry that hands a sink table to them."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from jobwatchd.config import parse_config, render_effective
from jobwatchd.options import ConfigError, ParseContext, Secret
from jobwatchd.sinks import (
    OptionScope,
    OptionsParser,
    SinkConfig,
    SinkContext,
    SinkRegistry,
    create_sink,
    render_sink_options,
)
from jobwatchd.sinks.file import FileOptions, FileSink
from jobwatchd.sinks.log import LogOptions, LogSink
from jobwatchd.sinks.webhook import WebhookOptions, WebhookSink
from tests.helpers.plugins import sink_plugin

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_c2Vjb25kLXNlY3JldC1rZXktbWF0ZXJpYWw="
ACCOUNTS = [{"name": "default", "endpoint": "https://ecs.example.com", "project_id": "p"}]
ENV = {"HUAWEICLOUD_SDK_AK": "AKEXAMPLE", "HUAWEICLOUD_SDK_SK": "SKEXAMPLE"}
HOOK = {"url": "https://h"}


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A config directory with a valid webhook secret file ``hook`` and a bad one ``bad``."""
    for name, content in (("hook", SECRET + "\n"), ("bad", "not-a-webhook-secret")):
        (tmp_path / name).write_text(content)
        (tmp_path / name).chmod(0o600)
    return tmp_path


def parse(parser: OptionsParser, table: Mapping[str, object], config_dir: Path) -> object:
    """Run ``parser`` as the config does: ``sinks[0]``, state under ``config_dir/state``,
    relative paths from ``config_dir``, then the deferred secret-file checks."""
    context = ParseContext(base_dir=config_dir, environ={}, verify=True)
    scope = OptionScope(prefix="sinks[0]", state_dir=config_dir / "state", context=context)
    options = parser(MappingProxyType(dict(table)), scope)
    for check in context.checks:
        check()
    return options


def parse_error(parser: OptionsParser, table: Mapping[str, object], config_dir: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(parser, table, config_dir)
    return str(caught.value)


# --- log ---------------------------------------------------------------------


def test_log_options_have_no_keys(config_dir: Path) -> None:
    assert parse(LogOptions.parse, {}, config_dir) == LogOptions()
    assert LogOptions().render() == {}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"path": "x"}, "sinks[0].path: unknown key"),
        (
            {"terminal_onyl": True},
            "sinks[0].terminal_onyl: unknown key (did you mean 'terminal_only'?)",
        ),
    ],
)
def test_log_options_refuse_keys(table: dict[str, Any], message: str, config_dir: Path) -> None:
    assert parse_error(LogOptions.parse, table, config_dir) == message


# --- file --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"path": "t.jsonl"}, FileOptions(path=Path("state/t.jsonl"), fsync="batch")),
        (
            {"path": "out/t.jsonl", "fsync": "always"},
            FileOptions(path=Path("state/out/t.jsonl"), fsync="always"),
        ),
        (
            {"path": "/var/log/jw.jsonl", "fsync": "NEVER"},
            FileOptions(path=Path("/var/log/jw.jsonl"), fsync="never"),
        ),
        ({"path": "../t.jsonl"}, FileOptions(path=Path("t.jsonl"))),
    ],
)
def test_file_options_parse(table: dict[str, Any], expected: FileOptions, config_dir: Path) -> None:
    """Relative paths start at the state directory (not the config's), and come out absolute."""
    options = parse(FileOptions.parse, table, config_dir)
    assert isinstance(options, FileOptions)
    assert options.path.is_absolute()
    assert options == FileOptions(path=config_dir / expected.path, fsync=expected.fsync)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "sinks[0].path: required"),
        ({"pth": "x"}, "sinks[0].pth: unknown key (did you mean 'path'?)"),
        ({"path": "f", "labls": {}}, "sinks[0].labls: unknown key (did you mean 'labels'?)"),
        ({"path": 1}, "sinks[0].path: must be a string, not an integer"),
        ({"path": " "}, "sinks[0].path: must not be empty"),
        ({"path": "a\0b"}, "sinks[0].path: must not contain NUL bytes"),
        (
            {"path": "f", "fsync": "sometimes"},
            'sinks[0].fsync: must be one of "always", "batch", "never", not \'sometimes\'',
        ),
        ({"path": "f", "fsync": 1}, "sinks[0].fsync: must be a string, not an integer"),
    ],
)
def test_file_options_refuse(table: dict[str, Any], message: str, config_dir: Path) -> None:
    assert parse_error(FileOptions.parse, table, config_dir) == message


def test_file_options_render() -> None:
    options = FileOptions(path=Path("/var/lib/jobwatchd/t.jsonl"), fsync="never")
    assert options.render() == {"path": "/var/lib/jobwatchd/t.jsonl", "fsync": "never"}


# --- webhook -----------------------------------------------------------------


def test_webhook_options_defaults_are_the_dataclass_defaults(config_dir: Path) -> None:
    options = parse(WebhookOptions.parse, HOOK, config_dir)
    assert options == WebhookOptions(url="https://h")
    assert options == WebhookOptions(
        url="https://h",
        secrets=(),
        secret_files=(),
        timeout=10.0,
        max_retry_age=86400.0,
        concurrency=8,
        batch_max=1,
    )


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"url": "https://h.example.com/x?k=v"}, {"url": "https://h.example.com/x?k=v"}),
        ({"url": "http://h:8080/"}, {"url": "http://h:8080/"}),
        (
            {**HOOK, "timeout": "250ms", "max_retry_age": "1h30m"},
            {"timeout": 0.25, "max_retry_age": 5400.0},
        ),
        ({**HOOK, "timeout": 3, "max_retry_age": 0}, {"timeout": 3.0, "max_retry_age": 0.0}),
        ({**HOOK, "concurrency": 1, "batch_max": 10_000}, {"concurrency": 1, "batch_max": 10_000}),
        ({**HOOK, "concurrency": 1000, "batch_max": 1}, {"concurrency": 1000, "batch_max": 1}),
        ({**HOOK, "secret": f" {SECRET} "}, {"secrets": (SECRET,)}),
        (
            {**HOOK, "secret": SECRET, "secrets": [OTHER_SECRET]},
            {"secrets": (SECRET, OTHER_SECRET)},
        ),
        ({**HOOK, "secret_file": "hook"}, {"secret_files": (Path("hook"),)}),
        (
            {**HOOK, "secret_file": "hook", "secret_files": ["hook"]},
            {"secret_files": (Path("hook"),) * 2},
        ),
    ],
)
def test_webhook_options_parse(
    table: dict[str, Any], expected: dict[str, Any], config_dir: Path
) -> None:
    """Secret files are taken relative to the config's directory."""
    if "secret_files" in expected:
        expected["secret_files"] = tuple(config_dir / path for path in expected["secret_files"])
    options = parse(WebhookOptions.parse, table, config_dir)
    assert options == WebhookOptions(**{"url": "https://h", **expected})
    assert isinstance(options, WebhookOptions)
    assert all(type(secret) is Secret for secret in options.secrets)
    assert SECRET not in repr(options)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "sinks[0].url: required"),
        ({"timeout": 0}, "sinks[0].timeout: must be greater than 0"),
        ({**HOOK, "secert": 1}, "sinks[0].secert: unknown key (did you mean 'secret'?)"),
        ({**HOOK, "url": 1}, "sinks[0].url: must be a string, not an integer"),
        ({**HOOK, "url": " "}, "sinks[0].url: must not be empty"),
        ({**HOOK, "url": "ftp://h"}, "sinks[0].url: must be an absolute http:// or https:// URL"),
        (
            {**HOOK, "url": "https://u:p@h"},
            "sinks[0].url: must not carry credentials (user:password@host)",
        ),
        ({**HOOK, "url": "https://h/#x"}, "sinks[0].url: must not have a fragment"),
        (
            {**HOOK, "url": "https://h:99999"},
            "sinks[0].url: invalid URL: Port out of range 0-65535",
        ),
        ({**HOOK, "url": "https:///x"}, "sinks[0].url: must name a host"),
        (
            {**HOOK, "url": "https://h/a b"},
            "sinks[0].url: must not contain whitespace or control characters",
        ),
        ({**HOOK, "secret": "c2VjcmV0"}, 'sinks[0].secret: must be "whsec_" followed by base64'),
        (
            {**HOOK, "secret": "whsec_!!"},
            'sinks[0].secret: must be "whsec_" followed by valid base64',
        ),
        ({**HOOK, "secret": "whsec_"}, 'sinks[0].secret: must have key material after "whsec_"'),
        ({**HOOK, "secret": 5}, "sinks[0].secret: must be a string, not an integer"),
        ({**HOOK, "secrets": [SECRET, 1]}, "sinks[0].secrets[1]: must be a string, not an integer"),
        (
            {**HOOK, "secrets": SECRET},
            "sinks[0].secrets: must be an array of strings, not a string",
        ),
        (
            {**HOOK, "secret_files": "hook"},
            "sinks[0].secret_files: must be an array of strings, not a string",
        ),
        (
            {**HOOK, "secret_file": "bad"},
            'sinks[0].secret_file: must be "whsec_" followed by base64',
        ),
        (
            {**HOOK, "secret_files": ["hook", "bad"]},
            'sinks[0].secret_files[1]: must be "whsec_" followed by base64',
        ),
        (
            {**HOOK, "secret_file": "/nonexistent/s"},
            "sinks[0].secret_file: cannot read /nonexistent/s: No such file or directory",
        ),
        ({**HOOK, "timeout": -1}, "sinks[0].timeout: must not be negative"),
        (
            {**HOOK, "timeout": True},
            'sinks[0].timeout: must be a duration such as "250ms", "2s", "5m", "24h", "7d" or'
            " a number of seconds, not a boolean",
        ),
        (
            {**HOOK, "max_retry_age": "1y"},
            "sinks[0].max_retry_age: invalid duration '1y': expected a duration such as"
            ' "250ms", "2s", "5m", "24h", "7d" or a number of seconds',
        ),
        ({**HOOK, "max_retry_age": "3651d"}, "sinks[0].max_retry_age: must be at most 3650d"),
        ({**HOOK, "concurrency": 0}, "sinks[0].concurrency: must be between 1 and 1000, not 0"),
        (
            {**HOOK, "concurrency": 1001},
            "sinks[0].concurrency: must be between 1 and 1000, not 1001",
        ),
        ({**HOOK, "concurrency": 1.5}, "sinks[0].concurrency: must be an integer, not a number"),
        ({**HOOK, "batch_max": 0}, "sinks[0].batch_max: must be between 1 and 10000, not 0"),
        (
            {**HOOK, "batch_max": 10_001},
            "sinks[0].batch_max: must be between 1 and 10000, not 10001",
        ),
        ({**HOOK, "batch_max": "2"}, "sinks[0].batch_max: must be an integer, not a string"),
    ],
)
def test_webhook_options_refuse(table: dict[str, Any], message: str, config_dir: Path) -> None:
    assert parse_error(WebhookOptions.parse, table, config_dir) == message


def test_webhook_messages_never_quote_a_secret_or_the_url(config_dir: Path) -> None:
    inline = "whsec_not*base64*topsecret"
    assert "topsecret" not in parse_error(
        WebhookOptions.parse, {**HOOK, "secret": inline}, config_dir
    )
    url = "https://h/hook/url-token?k=query-token#frag"
    assert "token" not in parse_error(WebhookOptions.parse, {"url": url}, config_dir)


def test_webhook_options_render_masks_secrets() -> None:
    options = WebhookOptions(
        url="https://u:pw@h.example.com:8443/hook?token=abc&v",
        secrets=(Secret(SECRET), Secret(OTHER_SECRET)),
        secret_files=(Path("/etc/jobwatchd/hook"),),
        timeout=2.0,
        max_retry_age=5400.0,
        concurrency=3,
        batch_max=7,
    )
    assert options.render() == {
        "url": "https://***@h.example.com:8443/hook?token=***&***",
        "secrets": ["***", "***"],
        "secret_files": ["/etc/jobwatchd/hook"],
        "timeout": "2s",
        "max_retry_age": "90m",
        "concurrency": 3,
        "batch_max": 7,
    }
    assert WebhookOptions(url="https://h").render() == {
        "url": "https://h",
        "timeout": "10s",
        "max_retry_age": "1d",
        "concurrency": 8,
        "batch_max": 1,
    }


@pytest.mark.parametrize(
    "table",
    [
        {"url": "https://h/x"},
        {"url": "https://h/x", "secret_file": "hook", "timeout": 0.001, "max_retry_age": 1 / 3},
        {"url": "http://h", "concurrency": 17, "batch_max": 2, "timeout": "1h30m"},
    ],
)
def test_webhook_render_parses_back(table: dict[str, Any], config_dir: Path) -> None:
    options = parse(WebhookOptions.parse, table, config_dir)
    assert isinstance(options, WebhookOptions)
    assert parse(WebhookOptions.parse, options.render(), config_dir) == options


# --- the sinks take their options -------------------------------------------


@pytest.mark.parametrize(
    ("sink_type", "options"),
    [
        ("file", {"path": "/tmp/x"}),
        ("webhook", {"url": "https://h"}),
        ("webhook", FileOptions(path=Path("/tmp/x"))),
    ],
)
def test_a_built_in_sink_refuses_options_of_another_shape(
    sink_type: str, options: object, tmp_path: Path
) -> None:
    with pytest.raises(TypeError, match="options must be"):
        create_sink(
            SinkConfig(type=sink_type, name="s", options=options),
            SinkContext(state_dir=tmp_path),
            0,
        )


def test_each_built_in_sink_registers_its_parser(tmp_path: Path) -> None:
    config = parse_config(
        {
            "accounts": ACCOUNTS,
            "sinks": [
                {"type": "log", "terminal_only": True},
                {"type": "file", "path": "t.jsonl", "types": ["jobwatchd.job.transition"]},
                {"type": "webhook", "url": "https://h", "batch_max": 4, "labels": {"a": "b"}},
            ],
        },
        environ={**ENV, "STATE_DIRECTORY": str(tmp_path)},
    )
    log, file, hook = config.sinks
    assert log.options == LogOptions()
    assert file.options == FileOptions(path=tmp_path / "t.jsonl")
    assert hook.options == WebhookOptions(url="https://h", batch_max=4)
    assert (log.filter.terminal_only, file.filter.types, dict(hook.filter.labels)) == (
        True,
        frozenset({"jobwatchd.job.transition"}),
        {"a": "b"},
    )
    context = SinkContext(state_dir=tmp_path)
    built = [create_sink(sink, context, index) for index, sink in enumerate(config.sinks)]
    assert [type(sink) for sink in built] == [LogSink, FileSink, WebhookSink]
    assert isinstance(built[2], WebhookSink)
    assert (built[2].batch_max, built[2].concurrency, built[2].timeout) == (4, 8, 10.0)


# --- plugins -------------------------------------------------------------------

PLUGIN = """
from dataclasses import dataclass

from jobwatchd.options import ConfigError, expect_int, expect_str


@dataclass(frozen=True, slots=True)
class KafkaOptions:
    topic: str
    partitions: int = 1

    @classmethod
    def parse(cls, table, scope):
        scope.check_keys(table, ("topic", "partitions"))
        topic = expect_str(scope.required(table, "topic"), scope.key("topic"))
        if topic.startswith("_"):
            raise ConfigError(scope.key("topic"), "must not start with '_'")
        partitions = expect_int(table.get("partitions", 1), scope.key("partitions"), 1, 64)
        return cls(topic=topic, partitions=partitions)

    def render(self):
        return {"topic": self.topic, "partitions": self.partitions}


class KafkaSink:
    parse_options = KafkaOptions.parse

    def __init__(self, config, context):
        if not isinstance(config.options, KafkaOptions):
            raise TypeError("options must be KafkaOptions")
        self.name = config.name
        self.options = config.options


class RawSink:
    def __init__(self, config, context):
        self.name = config.name
        self.options = config.options
"""


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Sink types ``kafka`` (with an options parser), ``raw`` (without one) and
    ``broken`` (whose module does not import)."""
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    entries = {
        "kafka": "jw_test_kafka:KafkaSink",
        "raw": "jw_test_kafka:RawSink",
        "broken": "jw_test_missing_module:Sink",
    }
    with sink_plugin(
        plugin_dir, monkeypatch, module="jw_test_kafka", source=PLUGIN, entries=entries
    ):
        yield


def sinks_config(*sinks: dict[str, Any]) -> dict[str, Any]:
    return {"accounts": ACCOUNTS, "sinks": list(sinks)}


@pytest.mark.usefixtures("plugins")
def test_a_plugin_parser_gets_its_own_keys_and_its_render_is_shown(tmp_path: Path) -> None:
    config = parse_config(
        sinks_config({"type": "kafka", "topic": "jobs", "partitions": 4, "terminal_only": True}),
        environ=ENV,
    )
    (sink,) = config.sinks
    assert type(sink.options).__name__ == "KafkaOptions"
    assert (getattr(sink.options, "topic", None), getattr(sink.options, "partitions", None)) == (
        "jobs",
        4,
    )
    assert sink.filter.terminal_only is True
    built: Any = create_sink(sink, SinkContext(state_dir=tmp_path), 0)
    assert built.options is sink.options
    rendered = tomllib.loads(render_effective(config))["sinks"]
    assert rendered == [
        {"type": "kafka", "name": "kafka", "topic": "jobs", "partitions": 4, "terminal_only": True}
    ]
    assert parse_config(tomllib.loads(render_effective(config)), environ=ENV) == config


@pytest.mark.usefixtures("plugins")
@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "sinks[0].topic: required"),
        ({"topc": "x"}, "sinks[0].topc: unknown key (did you mean 'topic'?)"),
        ({"topic": "_internal"}, "sinks[0].topic: must not start with '_'"),
        ({"topic": "t", "partitions": 65}, "sinks[0].partitions: must be between 1 and 64, not 65"),
    ],
)
def test_a_plugin_parser_names_the_bad_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(sinks_config({"type": "kafka", **table}), environ=ENV)
    assert str(caught.value) == message


@pytest.mark.usefixtures("plugins")
def test_a_plugin_without_a_parser_gets_its_keys_read_only(tmp_path: Path) -> None:
    config = parse_config(
        sinks_config({"type": "raw", "topic": "jobs", "api_key": "k3y", "statuses": ["SUCCESS"]}),
        environ=ENV,
    )
    (sink,) = config.sinks
    assert isinstance(sink.options, MappingProxyType)
    assert dict(sink.options) == {"topic": "jobs", "api_key": "k3y"}
    with pytest.raises(TypeError):
        sink.options["topic"] = "other"  # type: ignore[index]
    built: Any = create_sink(sink, SinkContext(state_dir=tmp_path), 0)
    assert built.options is sink.options
    assert render_sink_options(sink.options) == {"topic": "jobs", "api_key": "***"}


@pytest.mark.usefixtures("plugins")
def test_a_plugin_that_cannot_be_loaded_is_one_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(sinks_config({"type": "broken", "x": 1}), environ=ENV)
    assert caught.value.key == "sinks[0].type"
    assert caught.value.message == (
        "cannot load sink type 'broken': ModuleNotFoundError:"
        " No module named 'jw_test_missing_module'"
    )


def test_a_type_not_installed_here_keeps_its_keys(config_dir: Path) -> None:
    """Starting the daemon reports the missing type; parsing keeps what was written."""
    context = ParseContext(base_dir=config_dir, environ={}, verify=True)
    scope = OptionScope(prefix="sinks[0]", state_dir=config_dir, context=context)
    table = {"type": "acme.nosuch", "name": "n", "labels": {}, "nested": {"k": [1]}}
    options = SinkRegistry.installed().parse_options("acme.nosuch", table, scope)
    assert options == MappingProxyType({"nested": {"k": [1]}})


@pytest.mark.parametrize(
    ("options", "rendered"),
    [
        (LogOptions(), {}),
        (
            MappingProxyType({"password": "x", "url": "https://u:p@h/?t=1"}),
            {"password": "***", "url": "https://***@h/?t=***"},
        ),
        (FileOptions(path=Path("/x")), {"path": "/x", "fsync": "batch"}),
    ],
)
def test_render_sink_options(options: object, rendered: dict[str, object]) -> None:
    assert render_sink_options(options) == rendered
