/** Pushes the accepted bundle and the data it was trained on to the DVC remote (`sail push`). */
def call(Map config = [:]) {
    sailSh(config, 'sail push', ['aws'])
}
