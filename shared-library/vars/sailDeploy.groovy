/** Deploys this build's inference image to staging or production (`sail deploy --environment ...`). */
def call(Map config = [:]) {
    // Fixed script texts: the environment name is checked here, never passed through to the shell.
    Map scripts = [staging: 'sail deploy --environment staging', production: 'sail deploy --environment production']
    String script = scripts[config.to]
    if (script == null) {
        error "sailDeploy: 'to' must be staging or production, got '${config.to}'"
    }
    sailSh(config, script, ['verify', 'registry', 'aws', 'mlflow'])
}
