/** Builds this commit's train, metric and inference images (`sail build`). */
def call(Map config = [:]) {
    sailSh(config, 'sail build', ['registry', 'aws'])
}
