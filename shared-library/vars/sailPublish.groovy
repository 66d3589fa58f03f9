/** Pushes this build's images to the team registry (`sail publish`). */
def call(Map config = [:]) {
    sailSh(config, 'sail publish', ['registry', 'aws'])
}
