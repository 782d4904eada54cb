"""The relay's two accounts, shared by the relay documents, the guests and the host hook."""

GUEST_USER = "pair"  # guests (and the host's self-test): may open the tunnel port only
TUNNEL_USER = "tunnel"  # the host's reverse tunnel: may listen on the tunnel port only
KEYS_USER = "pairing-keys"  # runs sshd's AuthorizedKeysCommand for `pair` (reads the live guest list; owns nothing)
