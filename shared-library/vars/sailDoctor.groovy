/**
 * Says what this build keeps and what it loses with the workspace (`sail doctor --ci`): the first
 * stage, so it heads the log. Steps that would lose work refuse to run later, naming what to set.
 */
def call(Map config = [:]) {
    sailSh(config, 'sail doctor --ci')
}
