// A shared object that is not a Troupe plugin: it has no entry symbol.
extern "C" __attribute__((visibility("default"))) int not_a_plugin(void) { return 42; }
