"""The write-up's helper without the bug: the 5,000 rows are counted, not kept."""


def user_data(users_list: list[tuple[str, str, str]]) -> int:
    data = [("Foo", "Bar", "0123456789")] * 5000
    return len(users_list) + len(data)
