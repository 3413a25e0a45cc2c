"""experiments.secrets, directly: which keys and values are secrets (whole key components only, token shapes,
URLs with a password, the values of this process's secret-named environment variables), that ``find`` names
exactly the secrets of a config container, that ``scrub`` masks every one of them and nothing else, and that
``check_override`` refuses a secret in one line that never shows it."""
from __future__ import annotations

import copy
import os
import string
from contextlib import contextmanager
from typing import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments import secrets
from experiments.errors import ExperimentError

# The secret words as whole key components (``api_key`` is two components, ``apikey`` one).
SECRET_WORDS = ["api_key", "api-key", "apikey", "token", "secret", "secret_key", "secret-key", "secretkey",
                "password", "passwd", "credential", "credentials", "auth"]
# A last component outside this set cannot end a secret key (``key`` is here so ``api_key`` is never built by
# chance from two components).
ENDINGS = {"token", "secret", "password", "passwd", "credential", "credentials", "auth", "apikey", "secretkey", "key"}
SEPARATORS = st.sampled_from(["_", "-"])
COMPONENT = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=8)
# Text that cannot hold a token shape or a URL (no ``_``, ``-`` or ``:``) and is no secret by itself.
PLAIN = string.ascii_letters + string.digits + " ./,"
HF_TOKEN = st.text(alphabet=string.ascii_letters + string.digits, min_size=30, max_size=40).map(lambda s: "hf_" + s)
SK_TOKEN = st.tuples(st.sampled_from(string.ascii_letters + string.digits),
                     st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=18, max_size=40),
                     st.sampled_from(string.ascii_letters + string.digits)).map(lambda t: "sk-" + "".join(t))
TOKENS = st.one_of(HF_TOKEN, SK_TOKEN)


def random_case(draw, word: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.swapcase() if flip else c for c, flip in zip(word, flips))


@st.composite
def dotted_prefix(draw) -> str:
    """``a.b.`` (or nothing), optionally after Hydra's ``+`` / ``++`` / ``~`` marks."""
    parts = draw(st.lists(COMPONENT, max_size=3))
    mark = draw(st.sampled_from(["", "+", "++", "~"]))
    return mark + "".join(f"{part}." for part in parts)


@st.composite
def secret_names(draw) -> str:
    """A key's last part that ends with a secret word as whole components, in any case (``MY_Api-Key``)."""
    before = draw(st.lists(st.tuples(COMPONENT, SEPARATORS), max_size=3))
    return "".join(part + sep for part, sep in before) + random_case(draw, draw(st.sampled_from(SECRET_WORDS)))


NEAR_MISSES = st.one_of(  # a secret word inside a longer component: tokenizer, mytoken, authors
    st.tuples(st.sampled_from(SECRET_WORDS), COMPONENT).map(lambda t: t[0].replace("_", "").replace("-", "") + t[1]),
    st.tuples(COMPONENT, st.sampled_from(SECRET_WORDS)).map(lambda t: t[0] + t[1].replace("_", "").replace("-", "")),
)


@st.composite
def plain_names(draw) -> str:
    """A key's last part whose last component is no secret word (secret words before it, or inside it)."""
    last_component = draw(st.one_of(COMPONENT, NEAR_MISSES).filter(lambda c: c.lower() not in ENDINGS))
    before = draw(st.lists(st.tuples(st.one_of(COMPONENT, st.sampled_from(SECRET_WORDS)), SEPARATORS), max_size=3))
    return "".join(part + sep for part, sep in before) + last_component


def secret_keys():
    """Any dotted key (Hydra's marks included) whose last part is a secret name."""
    return st.tuples(dotted_prefix(), secret_names()).map("".join)


def plain_keys():
    return st.tuples(dotted_prefix(), plain_names()).map("".join)


@contextmanager
def env_without_secrets() -> Iterator[pytest.MonkeyPatch]:
    """This process's environment without secret-named variables (they would make their values secrets), put
    back after the block (one hypothesis example)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in [name for name in os.environ if secrets.is_secret_key(name)]:
            mp.delenv(name)
        yield mp



# ---- keys ----------------------------------------------------------------------------------------------------------


@given(secret_keys())
def test_a_key_ending_in_a_secret_word_as_whole_components_is_a_secret_in_any_case(key):
    assert secrets.is_secret_key(key), key


@given(plain_keys())
def test_a_key_whose_last_component_is_no_secret_word_is_not_a_secret(key):
    assert not secrets.is_secret_key(key), key


@given(secret_keys(), plain_keys())
def test_only_the_last_dotted_part_of_a_key_decides(secret, plain):
    assert not secrets.is_secret_key(f"{secret.lstrip('+~')}.{plain.lstrip('+~')}")
    assert secrets.is_secret_key(f"{plain.lstrip('+~')}.{secret.lstrip('+~')}")


def test_the_documented_near_misses_are_not_secrets():
    for key in ("tokenizer", "max_new_tokens", "tokenizer.max_length", "task.num_beams", "author", "keys"):
        assert not secrets.is_secret_key(key), key


# ---- values --------------------------------------------------------------------------------------------------------


@given(st.one_of(st.text(max_size=7), st.integers(), st.floats(), st.none(), st.booleans(),
                 st.lists(TOKENS, max_size=2), st.dictionaries(st.text(max_size=3), TOKENS, max_size=2)))
def test_short_strings_and_non_strings_are_never_secret_values(value):
    assert not secrets.is_secret_value(value)


@given(st.text(alphabet=PLAIN, max_size=20), TOKENS, st.sampled_from(" =:/'\",;("), st.sampled_from(" =:/'\",;)"),
       st.text(alphabet=PLAIN, max_size=20))
def test_a_token_shape_anywhere_in_a_value_is_a_secret(before, token, left, right, after):
    assert secrets.is_secret_value(token)
    assert secrets.is_secret_value(before + left + token + right + after)


@given(st.sampled_from(["http", "https", "postgresql", "redis", "s3", "git+ssh"]),
       st.text(alphabet=string.ascii_letters + string.digits + "._%!$&'()*+,;=~", min_size=1, max_size=12),
       st.text(alphabet=string.ascii_letters + string.digits + "._%!$&'()*+,;=~:", min_size=1, max_size=12),
       st.text(alphabet=string.ascii_letters + string.digits + ".-", min_size=1, max_size=12),
       st.text(alphabet=string.ascii_letters + string.digits + "/?=&", max_size=12))
def test_a_url_with_a_password_is_a_secret_value(scheme, user, password, host, path):
    assert secrets.is_secret_value(f"{scheme}://{user}:{password}@{host}/{path}")


@given(st.text(alphabet=PLAIN, max_size=30))
def test_a_url_without_a_password_and_plain_text_are_not_secret_values(text):
    with env_without_secrets():
        assert not secrets.is_secret_value(text)
        assert not secrets.is_secret_value(f"https://example.org/{text}")
        assert not secrets.is_secret_value(f"postgresql://user@db.example.org/{text}")


@given(secret_names(), st.text(alphabet=string.printable.strip(), min_size=8, max_size=24),
       st.text(alphabet=PLAIN, max_size=10), st.text(alphabet=PLAIN, max_size=10))
def test_the_value_of_a_secret_named_environment_variable_is_a_secret_wherever_it_is_pasted(name, value, before,
                                                                                           after):
    env_name = name.upper()
    with env_without_secrets() as mp:
        mp.setenv(env_name, value)
        assert secrets.is_secret_value(before + value + after)


@given(plain_names(), st.text(alphabet=PLAIN, min_size=8, max_size=24), st.text(alphabet=PLAIN, max_size=10))
def test_the_values_of_other_environment_variables_are_not_secrets(name, value, before):
    env_name = "X_" + name.upper()
    with env_without_secrets() as mp:
        mp.setenv(env_name, value)
        assert not secrets.is_secret_value(before + value)


@given(secret_names(), st.text(alphabet=PLAIN, min_size=1, max_size=7), st.text(alphabet=PLAIN, max_size=10))
def test_an_environment_secret_shorter_than_8_characters_is_ignored(name, value, around):
    env_name = name.upper()
    with env_without_secrets() as mp:
        mp.setenv(env_name, value)
        assert not secrets.is_secret_value(around + value + around + "padding!")


# ---- find and scrub over config containers -------------------------------------------------------------------------

SAFE_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                        st.text(alphabet=PLAIN, max_size=12))
# what a secret-named key holds: anything but "nothing" (None, "" or the mask)
SECRET_HOLDINGS = st.one_of(st.integers(), st.booleans(), st.text(alphabet=PLAIN, min_size=1, max_size=12),
                            st.dictionaries(plain_names(), SAFE_LEAVES, min_size=1, max_size=2))


@st.composite
def planted(draw, depth: int = 0, clean: bool = False):
    """(a config container, the dotted keys of the secrets planted in it); ``clean``: none planted."""
    kinds = ["leaf"] + ([] if clean else ["token"]) + (["dict", "list"] if depth < 2 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "leaf":
        return draw(SAFE_LEAVES), []
    if kind == "token":
        return draw(TOKENS), [""]
    if kind == "list":
        items = [draw(planted(depth + 1, clean)) for _ in range(draw(st.integers(0, 3)))]
        return [v for v, _ in items], [_join(str(i), p) for i, (_, paths) in enumerate(items) for p in paths]
    value, paths = {}, []
    for _ in range(draw(st.integers(0, 3))):
        if not clean and draw(st.booleans()):
            key = draw(secret_names())
            if key in value:
                continue
            value[key] = draw(SECRET_HOLDINGS)
            paths.append(key)
        else:
            key = draw(plain_names())
            if key in value:
                continue
            value[key], inner = draw(planted(depth + 1, clean))
            paths += [_join(key, p) for p in inner]
    return value, paths


def _join(head: str, tail: str) -> str:
    return f"{head}.{tail}" if tail else head


def _at(container, dotted: str):
    for part in dotted.split(".") if dotted else []:
        container = container[int(part)] if isinstance(container, list) else container[part]
    return container


@given(planted())
def test_find_names_exactly_the_planted_secrets(case):
    with env_without_secrets():
        container, paths = case
        assert sorted(secrets.find(container)) == sorted(paths)


@given(planted())
def test_scrub_masks_every_secret_find_names_and_leaves_the_rest_and_the_input_alone(case):
    with env_without_secrets():
        container, paths = case
        before = copy.deepcopy(container)
        scrubbed = secrets.scrub(container)
        assert container == before, "scrub changed its input"
        assert list(secrets.find(scrubbed)) == []
        for path in paths:
            assert _at(scrubbed, path) == secrets.MASK
        for path in secrets.find(before):  # the same set, read back: the masks are where find said
            assert _at(scrubbed, path) == secrets.MASK


@given(planted(clean=True))
def test_a_container_without_secrets_is_scrubbed_to_an_equal_copy(case):
    with env_without_secrets():
        container, paths = case
        assert paths == [] and list(secrets.find(container)) == []
        assert secrets.scrub(container) == container


@given(secret_names(), st.sampled_from([None, "", secrets.MASK]))
def test_a_secret_named_key_that_holds_nothing_is_neither_found_nor_masked(key, nothing):
    with env_without_secrets():
        assert list(secrets.find({"logger": {key: nothing}})) == []
        assert secrets.scrub({"logger": {key: nothing}}) == {"logger": {key: nothing}}


# ---- command-line overrides ----------------------------------------------------------------------------------------

SHOWN_VALUES = st.text(alphabet=string.ascii_letters + string.digits, min_size=7, max_size=16).map(lambda s: "#" + s)


def assert_refusal_names(exc: ExperimentError, key: str, value: str) -> None:
    message = str(exc)
    assert exc.exit_code == 2 and "\n" not in message
    assert message.startswith(f"'{key}' looks like a secret"), message
    assert value not in message, "the refusal showed the secret"
    assert "WANDB_API_KEY" in message and "HF_TOKEN" in message  # where the secret goes instead


@given(secret_keys(), SHOWN_VALUES)
def test_an_override_giving_a_secret_named_key_a_value_is_refused_without_showing_it(key, value):
    with env_without_secrets():
        with pytest.raises(ExperimentError) as caught:
            secrets.check_override(f"{key}={value}")
        assert_refusal_names(caught.value, key.lstrip("+~"), value)


@given(secret_keys(), st.sampled_from(["", "null", secrets.MASK]))
def test_an_override_clearing_a_secret_named_key_is_accepted(key, value):
    with env_without_secrets():
        secrets.check_override(f"{key}={value}")


@given(plain_keys(), st.text(alphabet=PLAIN, max_size=7), TOKENS, st.text(alphabet=PLAIN, max_size=7))
def test_an_override_carrying_a_token_under_any_key_is_refused_naming_the_key(key, before, token, after):
    with env_without_secrets():
        with pytest.raises(ExperimentError) as caught:
            secrets.check_override(f"{key}={before} {token} {after}")
        assert_refusal_names(caught.value, key.lstrip("+~"), token)


@given(plain_keys(), st.text(alphabet=PLAIN + "=", max_size=30))
def test_an_override_with_a_plain_key_and_value_is_accepted(key, value):
    with env_without_secrets():
        secrets.check_override(f"{key}={value}")
