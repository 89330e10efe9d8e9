def test_group_add_and_list(cli):
    r = cli("group", "add", "城南新区党工委")
    assert r.exit_code == 0, r
    r = cli("group", "list", "--json")
    assert r.json() == [{"name": "城南新区党工委", "parent": None, "members": 0, "subgroups": []}]
    r = cli("group", "add", "城南新区党工委")
    assert r.exit_code == 1 and "already exists" in r.stderr and "Traceback" not in r.stderr
    r = cli("group", "nope")
    assert r.exit_code == 2
