pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.samba",
    "tests.fixtures.slack",
    "tests.fixtures.slack_socket",
]
