/** Starts the inference image and checks the holdout rows against the metric step's predictions (`sail smoke --container`). */
def call(Map config = [:]) {
    sailSh(config, 'sail smoke --container', ['verify'])
}
