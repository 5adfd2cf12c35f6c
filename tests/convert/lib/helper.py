VALUE = "from-lib"
