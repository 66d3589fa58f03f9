/**
 * Runs the project's own tests (`sail test`: tests/ with pytest, its transformation layer, data
 * contract and params.yaml) before anything is built or trained; a failing test fails the stage,
 * and pytest's summary with the one-line verdict is in the log.
 */
def call(Map config = [:]) {
    sailSh(config, 'sail test')
}
