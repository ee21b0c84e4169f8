#include <stdio.h>
int main(void){printf("1..0\n");return 0;}
