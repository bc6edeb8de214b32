from dicomflow.index.tokens import new_token


def test_no_token_starts_like_a_command_line_option() -> None:
    # one in 64 draws of token_urlsafe starts with "-": 3000 draws miss that with odds of 1e-21
    tokens = {new_token() for _ in range(3000)}
    assert len(tokens) == 3000
    assert not [t for t in tokens if t.startswith("-")]
    assert {len(t) for t in tokens} == {43}
