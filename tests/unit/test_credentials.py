import pytest

from g5kdeploy.credentials import DEFAULT_API_URL, resolve_endpoint
from g5kdeploy.errors import CredentialsError

OUTSIDE = "laptop.example.org"


def write_config(home, text, mode=0o600):
    path = home / ".python-grid5000.yaml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_file_gives_url_and_credentials(tmp_path):
    write_config(tmp_path, "username: jdoe\npassword: s3cret\nuri: http://127.0.0.1:9/stable/\n")
    endpoint = resolve_endpoint(env={"HOME": str(tmp_path)}, fqdn=OUTSIDE)
    assert (endpoint.url, endpoint.username, endpoint.password) == ("http://127.0.0.1:9/stable", "jdoe", "s3cret")
    assert "s3cret" not in repr(endpoint)


def test_environment_overrides_the_file(tmp_path):
    write_config(tmp_path, "username: jdoe\npassword: s3cret\n")
    env = {"HOME": str(tmp_path), "G5K_USERNAME": "other", "G5K_PASSWORD": "pw", "G5K_API_URL": "http://x/stable"}
    endpoint = resolve_endpoint(env=env, fqdn=OUTSIDE)
    assert (endpoint.url, endpoint.username, endpoint.password) == ("http://x/stable", "other", "pw")


def test_world_readable_file_is_refused_with_the_chmod_fix(tmp_path):
    path = write_config(tmp_path, "username: jdoe\npassword: s3cret\n", mode=0o644)
    with pytest.raises(CredentialsError) as caught:
        resolve_endpoint(env={"HOME": str(tmp_path)}, fqdn=OUTSIDE)
    assert caught.value.hint == f"run: chmod 600 {path}"
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("text", ["", "username: [unclosed\n", "- a list\n"])
def test_empty_or_broken_file_is_an_error_not_anonymous(tmp_path, text):
    write_config(tmp_path, text)
    with pytest.raises(CredentialsError):
        resolve_endpoint(env={"HOME": str(tmp_path)}, fqdn=OUTSIDE)


def test_missing_file_without_environment_is_an_error_outside_grid5000(tmp_path):
    with pytest.raises(CredentialsError) as caught:
        resolve_endpoint(env={"HOME": str(tmp_path)}, fqdn=OUTSIDE)
    assert "G5K_USERNAME" in str(caught.value)


def test_no_credentials_needed_on_a_frontend(tmp_path):
    endpoint = resolve_endpoint(env={"HOME": str(tmp_path)}, fqdn="fnancy.nancy.grid5000.fr")
    assert endpoint.url == DEFAULT_API_URL
    assert not endpoint.authenticated
