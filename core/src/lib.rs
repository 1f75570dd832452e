//! caudal: the engine, the plugin host and the command line.
