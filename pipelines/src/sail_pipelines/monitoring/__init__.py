"""After release: served traffic, read back from the prediction logs, compared with what the
accepted model was trained on (`sail monitor`), and joined with late ground truth (`sail
feedback`)."""
