"""Extra-network tags and AND splitting, as A1111 v1.10.1 parses them."""

import pytest

from engine.errors import InvalidParamsError
from engine.prompts import ExtraNetworkCall, LoraCall, lora_call, parse_extra_networks, split_and


def test_tags_are_removed_without_tidying_whitespace() -> None:
    assert parse_extra_networks("a, <lora:x:1>, b")[0] == "a, , b"


def test_tags_are_returned_in_order_with_their_arguments() -> None:
    _, calls = parse_extra_networks("<lora:a:0.5> <hypernet:h:1> <lora:b>")
    assert [(c.kind, c.items) for c in calls] == [("lora", ("a", "0.5")), ("hypernet", ("h", "1")), ("lora", ("b",))]


def test_one_equals_sign_makes_a_named_argument() -> None:
    call = ExtraNetworkCall("lora", ("x", "te=0.5", "a=b=c"))
    assert call.positional == ("x", "a=b=c") and call.named == (("te", "0.5"),)


def test_tag_without_arguments_is_text() -> None:
    assert parse_extra_networks("<lora> <:x>") == ("<lora> <:x>", [])


def test_unicode_tag_names_are_word_characters() -> None:
    assert parse_extra_networks("<lora:猫:0.7>x") == ("x", [ExtraNetworkCall("lora", ("猫", "0.7"))])


def test_lora_multipliers_default_to_one() -> None:
    assert lora_call(ExtraNetworkCall("lora", ("x",))) == LoraCall("x", 1.0, 1.0, None)


def test_lora_unet_multiplier_defaults_to_the_text_encoder_one() -> None:
    assert lora_call(ExtraNetworkCall("lora", ("x", "0.6"))) == LoraCall("x", 0.6, 0.6, None)


def test_lora_positional_te_unet_dyn() -> None:
    assert lora_call(ExtraNetworkCall("lora", ("x", "0.6", "0.3", "8"))) == LoraCall("x", 0.6, 0.3, 8)


def test_lora_named_te_also_sets_the_unet_default() -> None:
    assert lora_call(ExtraNetworkCall("lora", ("x", "te=0.5"))) == LoraCall("x", 0.5, 0.5, None)


def test_lora_named_arguments_override_positional_ones() -> None:
    assert lora_call(ExtraNetworkCall("lora", ("x", "0.6", "unet=0.2", "dyn=4"))) == LoraCall("x", 0.6, 0.2, 4)


def test_lora_bad_multiplier_is_refused_by_name() -> None:
    with pytest.raises(InvalidParamsError, match="te multiplier"):
        lora_call(ExtraNetworkCall("lora", ("x", "strong")))


def test_lora_without_a_name_is_refused() -> None:
    with pytest.raises(InvalidParamsError, match="names no LoRA"):
        lora_call(ExtraNetworkCall("lora", ("te=1",)))


def test_and_splits_with_weights_keeping_leading_spaces() -> None:
    assert split_and("a cat AND a dog:1.5") == [("a cat", 1.0), (" a dog", 1.5)]


def test_and_must_be_upper_case_and_a_whole_word() -> None:
    assert split_and("sand and ANDROID") == [("sand and ANDROID", 1.0)]


def test_and_weight_may_be_negative_or_start_with_a_point() -> None:
    assert split_and("a:-0.5 AND b : .5") == [("a", -0.5), (" b", 0.5)]


def test_and_exponent_is_not_a_weight() -> None:
    assert split_and("a:1e2") == [("a:1e2", 1.0)]


def test_and_keeps_multiline_text() -> None:
    assert split_and("a\nb AND c") == [("a\nb", 1.0), (" c", 1.0)]


def test_and_of_empty_prompt_is_one_empty_part() -> None:
    assert split_and("") == [("", 1.0)]
