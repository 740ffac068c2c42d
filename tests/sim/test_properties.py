import pytest

from g5kdeploy.simulator.oarsub import ResourceSyntaxError, paris_time, parse_reservation, parse_resources
from g5kdeploy.simulator.properties import PropertyError, compile_properties

NODE = {"cluster": "gros", "memnode": 98304, "gpu_count": 0, "host": "gros-12.nancy.grid5000.fr", "wattmeter": "YES"}
COLUMNS = set(NODE)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("cluster='gros'", True),
        ("cluster != 'gros'", False),
        ("cluster <> 'gros'", False),
        ("memnode >= 98304 and gpu_count < 1", True),
        ("memnode > 98304 or gpu_count = 0", True),
        ("not (cluster = 'gros')", False),
        ("cluster in ('grisou', 'gros')", True),
        ("cluster not in ('grisou', 'gros')", False),
        ("host like 'gros-1_.%'", True),
        ("host not like 'gros-%'", False),
        ("(wattmeter='YES' and cluster in ('grisou')) or memnode <= 10", False),
        ("memnode > '1000'", True),
        ("", True),
    ],
)
def test_expressions(expr, expected):
    assert compile_properties(expr, COLUMNS)(NODE) is expected


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("colour = 'red'", 'column "colour" does not exist'),
        ("cluster = ", "end of input"),
        ("cluster = 'gros' and", "end of input"),
        ("cluster == 'gros'", "syntax error"),
        ("(cluster='gros'", "end"),
    ],
)
def test_errors(expr, fragment):
    with pytest.raises(PropertyError, match=fragment):
        compile_properties(expr, COLUMNS)


def test_resources_syntax():
    req = parse_resources("{cluster='gros'}/nodes=3+{cluster='grisou'}/nodes=1,walltime=61:55")
    assert [(p.sql, p.count) for p in req.parts] == [("cluster='gros'", 3), ("cluster='grisou'", 1)]
    assert req.walltime == 61 * 3600 + 55 * 60
    assert parse_resources("").walltime == 3600
    assert parse_resources("cluster=1/nodes=2,walltime=2").parts[0].same_cluster
    assert parse_resources("host=1,walltime=0:30:15").walltime == 1815
    with pytest.raises(ResourceSyntaxError):
        parse_resources("nodes=two")


def test_reservation_dates_are_paris_time():
    start = parse_reservation("2030-07-01 12:00", 0)
    assert paris_time(start) == "2030-07-01 12:00:00"
    assert start % 86400 == 10 * 3600  # CEST is UTC+2
    with pytest.raises(ValueError):
        parse_reservation("2030-13-01 12:00:00", 0)
