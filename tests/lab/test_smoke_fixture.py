def test_management_node_starts_with_site_defaults(mn):
    r = mn.ok("tabdump", "site")
    assert r.lines[0] == "#key,value,comments,disable"
    assert '"xcatdport","3001",,' in r.lines
