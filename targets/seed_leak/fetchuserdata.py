"""The write-up's bug: each call pins 5,000 more tuple references (line 6). Verdict: leak."""


def user_data(users_list: list[tuple[str, str, str]]) -> bool:
    data = [("Foo", "Bar", "0123456789")] * 5000
    users_list.extend(data)
    return True
