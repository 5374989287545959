import pytest

from compound_fer import taxonomy as tx


def test_table_shape_and_order():
    assert len(tx.CATEGORIES) == 22
    assert tx.basic_names() == ("Happy", "Sad", "Angry", "Surprised", "Disgusted", "Fearful")
    assert tx.basic_names(include_neutral=True)[0] == "Neutral"
    assert len(tx.compound_names()) == 15
    assert [c.cfee_id for c in tx.CATEGORIES][:7] == [1, 2, 3, 5, 6, 7, 8]


def test_names_are_case_and_space_insensitive():
    assert tx.by_name("happily surprised") is tx.by_name("Happily_Surprised") is tx.by_name(" happily-surprised ")
    assert tx.by_name("Sad ").name == "Sad"  # CFEE's xls has a stray space
    assert tx.by_name("surprise").name == "Surprised"


def test_unknown_names_and_ids_list_the_valid_ones():
    with pytest.raises(tx.UnknownCategoryError, match="Happily surprised"):
        tx.by_name("joyful")
    with pytest.raises(tx.UnknownCategoryError, match="valid ids"):
        tx.by_id(4)


def test_components_follow_the_names():
    for c in tx.categories("compound"):
        words = c.name.lower().replace("ly", "").split()
        if c.name in ("Appalled", "Hatred"):
            assert c.components == ("Angry", "Disgusted")
        elif c.name == "Awed":
            assert c.components == ("Fearful", "Surprised")
        else:
            stems = {"happi": "Happy", "sad": "Sad", "angri": "Angry", "fearful": "Fearful",
                     "disgusted": "Disgusted", "surprised": "Surprised"}
            expected = {v for k, v in stems.items() if any(w.startswith(k[:4]) for w in c.name.lower().split())}
            assert set(c.components) == expected, (c.name, words)


def test_identical_prototype_groups_exist_as_in_du_et_al():
    proto = lambda n: tx.by_name(n).prototypical  # noqa: E731
    assert proto("Sad") == proto("Sadly angry")
    assert proto("Appalled") == proto("Hatred") == proto("Sadly disgusted")
    assert proto("Fearful") == proto("Sadly fearful")


def test_regions_of_action_units():
    assert tx.by_name("Happy").regions == ("mouth",)
    assert tx.by_name("Surprised").regions == ("brows", "mouth", "chin")
    assert tx.regions_of([5, 9]) == ("eyes", "nose")
    assert all(set(r) <= set(tx.REGIONS) for r in tx.AU_REGIONS.values())


def test_labels_round_trip():
    for i, c in enumerate(tx.CATEGORIES):
        assert tx.label_of(c.name) == i and tx.name_of(i) == c.name
    assert tx.component_labels("Happily surprised") == (tx.label_of("Happy"), tx.label_of("Surprised"))
