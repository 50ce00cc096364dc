"""Models for ARO: NegCLIP (`aro.models.negclip`) and small CLIPs built from a word list (`aro.models.tiny_clip`)."""
