//! One module per subcommand: its arguments (`Args`) and its `run` function.
