"""Every guest has a name, and key sources take what people paste and type.

`--guest NAME=SOURCE` names a guest; without NAME= the source does (gh:USER -> USER, a key's comment, a
file's stem). The name is the key's comment in the stack config, so it reaches the outputs (test_program's
test_named_keys_reach_the_outputs) and pairing.names.roster. Bad names and sources: one line each, naming
the flag as typed and the fix, exit 2, nothing written. Real `python -m pairing` runs in a temp HOME without
the Pulumi CLI (as in test_first_five_minutes); key pages come from a local HTTP server (test_up's)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa

from pairing.names import GuestNameError, from_comment, roster, split_name
from pairing.sshkeys import parse_public_key

from .harness import make_key
from .test_first_five_minutes import new_home, run, written
from .test_up import key_pages, sites, up_args  # noqa: F401 (fixtures)
from pairing.up_plan import UpError, plan

pytestmark = pytest.mark.pure


def bare(line: str) -> str:
    return " ".join(line.split()[:2])


def named(line: str, name: str) -> str:
    return f"{bare(line)} {name}"


def planned(home, *argv: str) -> tuple[list[str], list[str]]:
    """The guests' and viewers' key lines `pairing up` would put in the stack config."""
    config = plan(up_args(*argv, "--region", "eu-west-1", "--sshd-key", SSHD), home=home, environ={}).config
    return json.loads(config.get("pairing:guestKeys", "[]")), json.loads(config["pairing:viewerKeys"])


SSHD = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBhaXJpbmcgZXhhbXBsZSBob3N0OyByZXBsYWNlLS0t sshd"


@pytest.fixture()
def home(tmp_path, keys):
    return new_home(tmp_path, keys)


@pytest.mark.parametrize("value, split", [
    ("alice=gh:alice", ("alice", "gh:alice")),
    ("  Al ice = gh:alice ", ("Al ice", "gh:alice")),  # a name, refused later by the rule
    ("=gh:alice", ("", "gh:alice")),
    ("bob=ssh-ed25519 AAAAC3Nza== bob@x", ("bob", "ssh-ed25519 AAAAC3Nza== bob@x")),
    # Sources that hold '=' themselves are no NAME=SOURCE.
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== a=b", (None, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== a=b")),
    ("ssh-dss AAAAB3NzaC1kc3M= old", (None, "ssh-dss AAAAB3NzaC1kc3M= old")),
    ("https://github.com/alice.keys?x=1", (None, "https://github.com/alice.keys?x=1")),
    ("gh:alice=x", (None, "gh:alice=x")),
    ("./keys/a=b.pub", (None, "./keys/a=b.pub")),
    ("~/a=b.pub", (None, "~/a=b.pub")),
    ("-----BEGIN OPENSSH PRIVATE KEY----- b3Blbn= -----END", (None, "-----BEGIN OPENSSH PRIVATE KEY----- b3Blbn= -----END")),
    ("gh:alice", (None, "gh:alice")),
])
def test_name_equals_source_split(value, split):
    assert split_name(value) == split


def test_a_file_named_with_an_equals_sign_is_that_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alice=laptop.pub").write_text("x\n")
    assert split_name("alice=laptop.pub") == (None, "alice=laptop.pub")
    assert split_name("alice=other.pub") == ("alice", "other.pub")


@pytest.mark.parametrize("comment, name", [
    ("alice@laptop", "alice"), ("Alice.Smith@example.com", "alice.smith"), ("Work Laptop", "work-laptop"),
    ("bob_2", "bob_2"), ("o'brien", None), ("", None), ("é@x", None), ("x" * 33, None), ("x" * 32, "x" * 32),
])
def test_a_comment_made_a_name(comment, name):
    assert from_comment(comment) == name


def test_names_from_sources(keys, home, sites, tmp_path):
    guest, guest2, viewer = keys["guest"].public_line, keys["guest2"].public_line, keys["viewer"].public_line
    sites["octocat"] = (200, f"{bare(guest)}\n{bare(guest2)}\n{bare(viewer)}\n".encode())
    assert planned(home, "--guest", "gh:octocat") == (
        [named(guest, "octocat"), named(guest2, "octocat-2"), named(viewer, "octocat-3")], [])
    sites["Mixed"] = (200, f"{bare(guest)}\n".encode())
    assert planned(home, "--guest", " gh:@Mixed ")[0] == [named(guest, "mixed")]  # pasted as shown on GitHub
    # A file: each key's comment (guest@test -> guest), else the file's stem; a key line: its comment, else its role.
    team = tmp_path / "Team.pub"
    team.write_text(f"{guest}\n{bare(guest2)}\n{bare(viewer)}  \n")
    assert planned(home, "--guest", str(team)) == ([named(guest, "guest"), named(guest2, "team"),
                                                    named(viewer, "team-2")], [])
    assert planned(home, "--guest", bare(guest), "--viewer", f"  {bare(viewer)}\t") == (
        [named(guest, "guest")], [named(viewer, "viewer")])
    # NAME= wins, also over a name the source would give an earlier key; more keys get -2, -3.
    sites["octocat"] = (200, f"{bare(guest)}\n{bare(guest2)}\n".encode())
    assert planned(home, "--guest", "gh:octocat", "--viewer", f"octocat={viewer}") == (
        [named(guest, "octocat-2"), named(guest2, "octocat-3")], [named(viewer, "octocat")])
    assert planned(home, "--guest", f"pair.1={team}") == (
        [named(guest, "pair.1"), named(guest2, "pair.1-2"), named(viewer, "pair.1-3")], [])
    # A source that lists a key twice gives it once.
    twice = tmp_path / "twice.pub"
    twice.write_text(f"{guest}\n{guest}\n")
    assert planned(home, "--guest", str(twice))[0] == [named(guest, "guest")]


def test_url_forms_of_the_supported_sites(keys, home, sites):
    guest, guest2 = keys["guest"].public_line, keys["guest2"].public_line
    sites["octocat"] = (200, f"{bare(guest)}\n".encode())
    sites["lab"] = (200, f"{bare(guest2)} lab@laptop\n".encode())
    assert planned(home, "--guest", "https://github.com/octocat.keys", "--viewer", " https://gitlab.com/lab.keys ") == (
        [named(guest, "octocat")], [named(guest2, "lab")])
    assert planned(home, "--guest", "boss=https://github.com/octocat")[0] == [named(guest, "boss")]
    assert planned(home, "--guest", "gh:octocat", "--viewer", "gl:@lab") == ([named(guest, "octocat")], [named(guest2, "lab")])


def test_roster_names_the_keys_up_named(keys, home, sites):
    sites["octocat"] = (200, f"{bare(keys['guest'].public_line)}\n".encode())
    guests, viewers = planned(home, "--guest", "gh:octocat", "--guest", keys["guest2"].public_line,
                              "--viewer", f"bob={keys['viewer'].public_line}")
    people = roster([parse_public_key(k) for k in guests], [parse_public_key(k) for k in viewers])
    assert [(p.name, p.typing) for p in people] == [("octocat", True), ("guest2", True), ("bob", False)]
    # Outputs from before names, or written by hand: their comments made names, else guest-N.
    old = roster([parse_public_key(keys["guest"].public_line), parse_public_key(bare(keys["guest2"].public_line))], [])
    assert [p.name for p in old] == ["guest", "guest-2"]


def dsa_line() -> str:
    # Made with cryptography: OpenSSH 9.8 and newer's ssh-keygen makes no DSA keys any more.
    key = dsa.generate_private_key(key_size=1024).public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " old@laptop"


# The real command never reaches out to GitHub or GitLab here (port 9: nothing listens).
NO_SITES = {"PAIRING_GITHUB_KEYS_URL": "http://127.0.0.1:9/{user}.keys", "PAIRING_GITLAB_KEYS_URL": "http://127.0.0.1:9/{user}.keys"}
RULE = "use lowercase letters, digits, '.', '_' and '-', at most 32 characters"
FORMS = "a .pub file, a key line, gh:USER, gl:USER, https://github.com/USER.keys or https://gitlab.com/USER.keys"


@pytest.mark.filterwarnings("ignore:SSH DSA key support is deprecated")
def test_bad_names_and_sources_one_line_each(keys, tmp_path):
    home, cwd = new_home(tmp_path, keys), tmp_path / "cwd"
    cwd.mkdir()
    old = dsa_line()
    short = make_key(tmp_path / "rsa", "short", "rsa", 1024).path.with_suffix(".pub")
    bob, bob_too = f"bob={keys['guest2'].public_line}", f"bob={keys['viewer'].public_line}"
    result = run("up", "--guest", "Al ice=gh:alice", "--guest", bob, "--viewer", bob_too,
                 "--viewer", "o'brien=gh:obrien", "--guest", "=gh:x", "--guest", "gh:", "--viewer", " gl:@ ",
                 "--guest", "https://example.com/alice.keys", "--guest", "https://github.com/alice/dotfiles",
                 "--guest", old, "--viewer", str(short), "--guest", "  ", "--region", "eu-west-1",
                 home=home, cwd=cwd, **NO_SITES)
    assert (result.returncode, result.stdout) == (2, "")  # stopped before the machine's checks
    assert result.stderr.splitlines() == [
        f"pairing up: --guest \"Al ice=gh:alice\": 'Al ice' is not a guest name: {RULE}; e.g. --guest al-ice=gh:alice",
        "pairing up: --guest =gh:x: '' is not a guest name: " + RULE + "; e.g. --guest alice=gh:x",
        "pairing up: --guest \"gh:\": no user name after gh:; write gh:USER, their github user name, e.g. gh:octocat",
        f"pairing up: --guest https://example.com/alice.keys: not a keys page pairing fetches; give {FORMS}",
        f"pairing up: --guest https://github.com/alice/dotfiles: not a keys page pairing fetches; give {FORMS}",
        f"pairing up: --guest \"{old[:45]}...\": DSA keys are refused (OpenSSH removed them); ask your guest to "
        "make one with `ssh-keygen -t ed25519`",
        f"pairing up: --guest \"\": is empty; give {FORMS}",
        f"pairing up: --viewer \"{bob_too[:45]}...\": the name bob is taken (--guest \"{bob[:45]}...\"); give each "
        "guest their own name",
        "pairing up: --viewer \"o'brien=gh:obrien\": \"o'brien\" is not a guest name: " + RULE
        + "; e.g. --viewer alice=gh:obrien",
        "pairing up: --viewer gl:@: no user name after gl:; write gl:USER, their gitlab user name, e.g. gl:octocat",
        f"pairing up: --viewer {short}: line 1: RSA key of 1024 bits is too short (minimum 2048); ask your guest to "
        "make one with `ssh-keygen -t ed25519`",
    ]
    assert written(home, cwd) == []


def test_a_github_users_name_too_long_for_a_guest_name(keys, home, sites):
    user = "a" * 31  # a name of 31: its second key would be a-...-2, 33 characters
    sites[user] = (200, f"{bare(keys['guest'].public_line)}\n{bare(keys['guest2'].public_line)}\n".encode())
    with pytest.raises(UpError) as refused:
        planned(home, "--guest", f"gh:{user}")
    assert str(refused.value) == (f"--guest gh:{user}: '{user}' is too long for a guest name (at most 32 characters, "
                                  f"-2, -3 added for more keys); name them: --guest NAME=gh:{user}")
    assert planned(home, "--guest", f"ann=gh:{user}")[0] == [named(keys["guest"].public_line, "ann"),
                                                            named(keys["guest2"].public_line, "ann-2")]


@pytest.mark.filterwarnings("ignore:SSH DSA key support is deprecated")
def test_a_weak_key_of_the_host_is_the_hosts_to_replace(keys, home, tmp_path):
    """--host-key is the host's own: "make one", not "ask your guest"."""
    host = tmp_path / "old.pub"
    host.write_text(dsa_line() + "\n")
    with pytest.raises(UpError) as refused:
        planned(home, "--guest", keys["guest"].public_line, "--host-key", str(host))
    assert str(refused.value) == (f"--host-key {host}: line 1: DSA keys are refused (OpenSSH removed them); "
                                  "make one with: ssh-keygen -t ed25519")


def test_direct_says_bad_names_the_same(keys, tmp_path):
    home, cwd = new_home(tmp_path, keys), tmp_path / "cwd"
    cwd.mkdir()
    ann, ann_too = f"ann={keys['guest'].public_line}", f"ann={keys['viewer'].public_line}"
    result = run("direct", "--listen", "127.0.0.1", "--guest", ann, "--viewer", ann_too, "--viewer", "Bob=gh:bob",
                 home=home, cwd=cwd, **NO_SITES)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        f"pairing direct: --viewer \"{ann_too[:45]}...\": the name ann is taken (--guest \"{ann[:45]}...\"); "
        "give each guest their own name",
        f"pairing direct: --viewer Bob=gh:bob: 'Bob' is not a guest name: {RULE}; e.g. --viewer bob=gh:bob",
    ]
    assert written(home, cwd) == []


def test_help_says_how_guests_are_named(keys, tmp_path):
    for command in ("up", "direct"):
        text = " ".join(run(command, "--help", home=new_home(tmp_path / command, keys), cwd=tmp_path).stdout.split())
        assert "--guest [NAME=]SOURCE a guest who may type (required: at least one; repeat for more). SOURCE: a .pub file, a key line, " \
               "gh:USER, gl:USER, https://github.com/USER.keys or https://gitlab.com/USER.keys." in text
        assert "default: USER (USER-2... for more keys), else the key's comment (alice@laptop: alice)" in text
        assert "--viewer [NAME=]SOURCE a guest who may only watch (repeat for more); [NAME=]SOURCE as for --guest" in text


def test_what_is_shown_back_is_quoted_for_a_shell_and_escaped_for_a_terminal(keys, home):
    line = keys["guest"].public_line
    with pytest.raises(UpError) as refused:
        planned(home, "--guest", f"Bob={line}", "--guest", "\x1b[2J/keys/x.pub", "--viewer", "$HOME/x=y.pub")
    assert str(refused.value).splitlines() == [
        f"--guest \"{('Bob=' + line)[:45]}...\": 'Bob' is not a guest name: {RULE}; e.g. "
        f"--guest \"{('bob=' + line)[:45]}...\"",
        "--guest '\\x1b[2J/keys/x.pub': no such file; give " + FORMS,
        f"--viewer '$HOME/x=y.pub': no such file; give {FORMS}",
    ]


def test_a_key_line_gone_wrong_is_said_as_one_not_as_a_missing_file(keys, home):
    blob = keys["guest"].public_line.split()[1]
    with pytest.raises(UpError) as refused:
        planned(home, "--guest", f"ssh-xmss@openssh.com {blob} x", "--guest", blob, "--viewer", "~nosuchuser4242/a.pub")
    expected = "is not an OpenSSH public key line; expected e.g. 'ssh-ed25519 AAAA... you@laptop' (no options in front, no certificates)"
    assert str(refused.value).splitlines() == [
        f"--guest \"ssh-xmss@openssh.com {blob[:24]}...\": 'ssh-xmss@openssh.com {blob[:24]}...' {expected}",
        f"--guest {blob}: '{blob[:45]}...' {expected}",
        "--viewer ~nosuchuser4242/a.pub: no such account as its ~USER names; give the file's full path",
    ]


# --- issue 19, finding 7: a key's comment is its owner's to write, so it never takes a name -----------------


@pytest.fixture()
def claimants(keys, tmp_path):
    """mallory.pub, whose comment says alice@laptop, and alice.pub (alice@desk): both claim alice."""
    mallory, alice = tmp_path / "mallory.pub", tmp_path / "alice.pub"
    mallory.write_text(f"{bare(keys['guest'].public_line)} alice@laptop\n")
    alice.write_text(f"{bare(keys['guest2'].public_line)} alice@desk\n")
    return mallory, alice


def test_two_keys_claiming_one_name_by_comment_are_refused_in_either_order(home, claimants):
    mallory, alice = claimants
    for first, second in ((mallory, alice), (alice, mallory)):
        with pytest.raises(UpError) as refused:
            planned(home, "--guest", str(first), "--guest", str(second))
        assert str(refused.value) == (f"--guest {first} and --guest {second}: their keys' comments claim the name "
                                      f"alice; name each guest: --guest NAME={first}")


def test_a_comment_never_displaces_a_name_given_or_a_sites_user(keys, home, sites, claimants):
    mallory, alice = claimants
    with pytest.raises(UpError) as refused:
        planned(home, "--guest", str(mallory), "--viewer", f"alice={alice}")
    assert str(refused.value) == (f"--guest {mallory}: its key's comment claims the name alice, which --viewer "
                                  f"alice={alice} has; name it: --guest NAME={mallory}")
    sites["alice"] = (200, f"{bare(keys['guest2'].public_line)}\n".encode())
    with pytest.raises(UpError) as refused:
        planned(home, "--guest", str(mallory), "--guest", "gh:alice")
    assert str(refused.value) == (f"--guest {mallory}: its key's comment claims the name alice, which --guest "
                                  f"gh:alice has; name it: --guest NAME={mallory}")
    # Named, mallory's key is hers under the name given, and alice is alice.
    assert planned(home, "--guest", f"mallory={mallory}", "--guest", str(alice))[0] == [
        named(keys["guest"].public_line, "mallory"), named(keys["guest2"].public_line, "alice")]


def test_the_roster_refuses_two_keys_claiming_one_name(keys):
    mallory = parse_public_key(f"{bare(keys['guest'].public_line)} alice@laptop")
    alice = parse_public_key(f"{bare(keys['guest2'].public_line)} alice@desk")
    with pytest.raises(GuestNameError) as refused:
        roster([mallory], [alice])
    assert str(refused.value) == (f"the keys {mallory.fingerprint} and {alice.fingerprint} both claim the name alice "
                                  "by their comment; give each key its own comment (pairing up --guest NAME=SOURCE does)")
    # A key without a name of its own never gets one a comment claims, whichever comes first.
    bare_key = parse_public_key(bare(keys["viewer"].public_line))
    assert [p.name for p in roster([bare_key], [parse_public_key(f"{bare(keys['guest'].public_line)} guest-1")])] == \
        ["guest-1-2", "guest-1"]


def test_one_key_twice_or_in_two_roles_is_refused(keys, home, claimants):
    mallory, alice = claimants
    fingerprint = parse_public_key(keys["guest"].public_line).fingerprint
    with pytest.raises(UpError) as refused:
        planned(home, "--guest", str(mallory), "--viewer", f"bob={keys['guest'].public_line}", "--guest",
                f"carol={mallory}")
    assert str(refused.value).splitlines() == [  # the guests' values first, then the viewers'
        f"--guest carol={mallory}: the key {fingerprint} is given twice (also --guest {mallory}); give it once",
        f"--viewer \"bob={keys['guest'].public_line[:41]}...\": the key {fingerprint} is also given as --guest "
        f"{mallory}; give each key one role: --guest types, --viewer watches",
    ]


def test_direct_refuses_names_and_keys_claimed_twice_before_anything(keys, tmp_path, claimants):
    mallory, alice = claimants
    home, cwd = new_home(tmp_path, keys), tmp_path / "cwd"
    cwd.mkdir()
    result = run("direct", "--listen", "127.0.0.1", "--guest", str(mallory), "--guest", str(alice),
                 "--viewer", str(alice), home=home, cwd=cwd, **NO_SITES)
    assert (result.returncode, result.stdout) == (2, "")
    fingerprint = parse_public_key(keys["guest2"].public_line).fingerprint
    assert result.stderr.splitlines() == [
        f"pairing direct: --viewer {alice}: the key {fingerprint} is also given as --guest {alice}; give each key "
        "one role: --guest types, --viewer watches",
        f"pairing direct: --guest {mallory} and --guest {alice}: their keys' comments claim the name alice; name "
        f"each guest: --guest NAME={mallory}",
    ]
    assert written(home, cwd) == []
