/** Pushes this build's images to the team registry and signs the inference image (`sail publish`). */
def call(Map config = [:]) {
    sailSh(config, 'sail publish', ['signing', 'registry', 'aws'])
}
