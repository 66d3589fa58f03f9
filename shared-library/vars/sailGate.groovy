/** Accepts the best candidate only if it meets the thresholds and does not regress against the champion (`sail gate`). */
def call(Map config = [:]) {
    // register: false judges only (pull requests, other branches): just the delivering branch makes a `candidate`.
    String script = config.register == false ? 'sail gate --no-register' : 'sail gate'
    sailSh(config, script, ['signing', 'aws', 'mlflow'])
}
