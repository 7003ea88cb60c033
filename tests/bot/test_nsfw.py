"""The NSFW policy: pure rules, then /nsfw and /imagine through discord.py against the stand-in."""

from __future__ import annotations

import pytest

from bot.nsfw import DEFAULT_WORDS, Policy, checked_words, decide, flagged_words
from engine.errors import InvalidParamsError
from tests.bot.harness import ALICE, SERVER_ADMIN, Harness
from tests.bot.helpers import assert_ephemeral, contents, edits, imagine, slash
from tests.bot.standin import OTHER_CHANNEL_ID, InteractionHandle, StandinUser
from tests.fakes import FakeExecutor


def test_listed_words_match_whole_words_of_the_prompt_however_written() -> None:
    words = ("nude", "large breasts")
    assert flagged_words("a (NUDE:1.2) statue, [marble]", words) == ["nude"]
    assert flagged_words("1girl, large_breasts, smiling", words) == ["large breasts"]
    assert flagged_words("a denuded hillside, nudes", words) == []  # whole words only
    assert flagged_words("", words) == []


def test_the_decision_by_channel_kind() -> None:
    policy = Policy(outside="refuse", words=("nude",))
    assert decide("a cat", policy, age_restricted=False) == ("allow", [])
    assert decide("a nude statue", policy, age_restricted=True) == ("allow", ["nude"])
    assert decide("a nude statue", policy, age_restricted=False) == ("refuse", ["nude"])
    assert decide("a nude statue", Policy(outside="spoiler", words=("nude",)), age_restricted=False)[0] == "spoiler"
    strict = Policy(outside="refuse", in_age_restricted=False, words=("nude",))
    assert decide("a nude statue", strict, age_restricted=True)[0] == "refuse"
    assert "nsfw" in DEFAULT_WORDS


def test_word_lists_are_bounded_and_clean() -> None:
    assert checked_words(["  Nude ", "nude", "large  breasts", ""]) == ("nude", "large breasts")
    with pytest.raises(InvalidParamsError, match="may hold 200 words"):
        checked_words([f"w{i}" for i in range(201)])
    with pytest.raises(InvalidParamsError, match="1 to 50 letters"):
        checked_words(["!!!"])


async def nsfw(
    harness: Harness, command: str, user: StandinUser = SERVER_ADMIN, /, **options: object
) -> InteractionHandle:
    return await slash(harness, f"nsfw {command}", user, **options)


async def test_flagged_prompts_are_refused_outside_age_restricted_channels(
    harness: Harness, executor: FakeExecutor
) -> None:
    harness.standin.age_restricted.add(OTHER_CHANNEL_ID)
    await harness.restart()  # the bot learns the channels from the guild it is sent
    refused = await imagine(harness, ALICE, prompt="a nude statue", negative_prompt="nsfw")
    assert_ephemeral(harness.standin, refused, "kept out of this channel (`nude`)", "age-restricted channel")
    await imagine(harness, ALICE, prompt="a cat", negative_prompt="nsfw, nude")  # the negative is never read
    handle = await harness.standin.slash("imagine", ALICE, in_channel=OTHER_CHANNEL_ID, prompt="a nude statue")
    await harness.settle(handle)
    assert [job.params.prompt for job in executor.submitted] == ["a cat", "a nude statue"]


async def test_spoiler_policy_posts_the_images_behind_a_spoiler(harness: Harness, executor: FakeExecutor) -> None:
    shown = await nsfw(harness, "set", outside="spoiler")
    assert_ephemeral(harness.standin, shown, "Elsewhere it is drawn and posted behind a spoiler")
    flagged = await imagine(harness, ALICE, prompt="a nude statue")
    final = edits(harness.standin, flagged)[-1]
    assert final.files and all(f.filename.startswith("SPOILER_") for f in final.files)
    assert "Posted behind a spoiler" in contents(harness.standin, flagged)[-1]
    plain = await imagine(harness, ALICE, prompt="a cat")
    assert not any(f.filename.startswith("SPOILER_") for f in edits(harness.standin, plain)[-1].files)
    assert harness.store is not None and harness.store.get_job(executor.submitted[0].job_id).spoiler  # type: ignore[union-attr]


async def test_admins_edit_the_word_list_and_members_cannot(harness: Harness, executor: FakeExecutor) -> None:
    refused = await nsfw(harness, "words", ALICE, add="kitten")
    assert_ephemeral(harness.standin, refused, "Only an Easel admin can change this server's NSFW policy.")
    listed = await nsfw(harness, "words", add="gore, large breasts", remove="nude")
    text = assert_ephemeral(harness.standin, listed, "`gore`", "`large breasts`")
    assert "`nude`" not in text
    await imagine(harness, ALICE, prompt="a nude statue")  # no longer listed
    refused = await imagine(harness, ALICE, prompt="gore everywhere")
    assert_ephemeral(harness.standin, refused, "(`gore`)")
    reset = await nsfw(harness, "words", reset=True)
    assert "`nude`" in assert_ephemeral(harness.standin, reset) and len(executor.submitted) == 1
    assert "Listed words (17)" in assert_ephemeral(harness.standin, await nsfw(harness, "show", ALICE))


async def test_dms_follow_the_config(harness: Harness, executor: FakeExecutor) -> None:
    handle = await harness.standin.slash("imagine", ALICE, in_dm=True, prompt="a cat in my DMs")
    await harness.settle(handle)
    refused = await harness.standin.slash("imagine", ALICE, in_dm=True, prompt="a nude statue")
    await harness.settle(refused)
    assert_ephemeral(harness.standin, refused, "kept out of DMs (`nude`)")
    assert [job.params.prompt for job in executor.submitted] == ["a cat in my DMs"]
    harness.settings = harness.settings.model_copy(update={"allow_dms": False})
    await harness.restart()
    closed = await harness.standin.slash("imagine", ALICE, in_dm=True, prompt="a cat")
    await harness.settle(closed)
    assert_ephemeral(harness.standin, closed, "This bot draws on servers only")
    assert len(executor.submitted) == 1
