"""The scheduler daemon: leader election, materialisation, dispatch and status intake."""
