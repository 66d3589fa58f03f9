// Entry point: groovy tests/jenkins/run.groovy [--only TEXT] [--demo-failure]   (see README.md)
// The harness classes live beside this file; put this directory on the class path, then run them.
File here = new File(getClass().protectionDomain.codeSource.location.toURI()).parentFile
getClass().classLoader.addClasspath(here.path)
def main = getClass().classLoader.loadClass('HarnessMain').newInstance(here)
System.exit(main.run(args as List))
